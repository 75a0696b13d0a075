/* MACO (src/vis/maco.c, cl/maco.cl): the phase parameterization's gradient
 * against central finite differences in double on the host, the kernels
 * against the plain C reference (ref_maco.c), the fixed magnitude, the
 * cohort spectrum, MACO's crops, the loop on a cube detector, and the CLI
 * (a model without a spectrum is refused with the fix; `neurofv spectrum`
 * adds it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/rng.h"
#include "neurofv/vis.h"
#include "neurofv/vis_ops.h"
#include "ref_maco.h"
#include "test.h"

/* Odd, even and a Nyquist-carrying mix: (D, H, W) = (5, 6, 4). */
static const int DIMS[3] = {5, 6, 4};

static float *test_amplitude(const int dims[3], unsigned seed)
{
    size_t vol = (size_t)dims[0] * dims[1] * dims[2];
    float *a = test_random(vol, seed, 0.2f, 1.5f);
    /* The amplitude of a real volume is symmetric: A(k) = A(-k). */
    for (size_t k = 0; k < vol; k++) a[ref_mirror(dims, k)] = a[k];
    return a;
}

/* d <w, image(phi)> / d phi: the analytic host gradient against central
 * differences of the host decode, both in double. */
TEST(maco_phase_gradient_matches_finite_differences)
{
    size_t vol = (size_t)DIMS[0] * DIMS[1] * DIMS[2];
    float *amp = test_amplitude(DIMS, 3), *pf = test_random(vol, 4, -3.1f, 3.1f), *wf = test_random(vol, 5, -1, 1);
    double *phi = malloc(vol * sizeof *phi), *w = malloc(vol * sizeof *w), *g = malloc(vol * sizeof *g);
    double *img = malloc(vol * sizeof *img);
    for (size_t i = 0; i < vol; i++) phi[i] = pf[i], w[i] = wf[i];
    const double lo = -1.5, hi = 2.5, h = 1e-6;
    ref_maco_grad(DIMS, amp, lo, hi, phi, w, g);
    double worst = 0, big = 0;
    size_t worst_i = 0;
    int bad = 0;
    for (size_t i = 0; i < vol; i++) {
        double keep = phi[i], lp = 0, lm = 0;
        phi[i] = keep + h;
        ref_maco_decode(DIMS, amp, lo, hi, phi, img);
        for (size_t j = 0; j < vol; j++) lp += w[j] * img[j];
        phi[i] = keep - h;
        ref_maco_decode(DIMS, amp, lo, hi, phi, img);
        for (size_t j = 0; j < vol; j++) lm += w[j] * img[j];
        phi[i] = keep;
        double fd = (lp - lm) / (2 * h), diff = fabs(fd - g[i]);
        /* Central differences in double at h = 1e-6: truncation ~h^2, round-off ~1e-16 / h. */
        if (diff > 1e-8 + 1e-6 * fabs(fd)) bad++;
        if (diff > worst) worst = diff, worst_i = i;
        big = fmax(big, fabs(fd));
    }
    printf("  maco phase gradient vs FD (double, h 1e-6, atol 1e-8 + rtol 1e-6): worst |diff| %.3g at %zu of %zu "
           "(largest |grad| %.3g)\n", worst, worst_i, vol, big);
    CHECK(bad == 0, "maco gradient vs finite differences: %d of %zu outside atol 1e-8 + rtol 1e-6 (worst %.3g)", bad,
          vol, worst);
    CHECK(big > 1e-3, "the gradient is not trivially zero (largest %.3g)", big);
    free(amp);
    free(pf);
    free(wf);
    free(phi);
    free(w);
    free(g);
    free(img);
}

/* The device decode and adjoint (N = 2) against the reference, and the
 * complex magnitude of the decoded coefficients equals the amplitude. */
TEST(maco_kernels_match_reference)
{
    const int N = 2, shape[5] = {N, 1, DIMS[0], DIMS[1], DIMS[2]};
    size_t vol = (size_t)DIMS[0] * DIMS[1] * DIMS[2], numel = vol * N;
    float *amp = test_amplitude(DIMS, 7), *phi = test_random(numel, 8, -3.1f, 3.1f);
    float *w = test_random(numel, 9, -1, 1);
    const float lo = -1.0f, hi = 3.0f;
    nfv_maco *mc = NULL;
    if (!CHECK_OK(nfv_maco_create(test_ctx(), DIMS[0], DIMS[1], DIMS[2], amp, lo, hi, &mc))) return;
    nfv_tensor tp, ti, tw, tg;
    CHECK_OK(test_tensor(&tp, 5, shape, phi));
    CHECK_OK(test_tensor(&ti, 5, shape, NULL));
    CHECK_OK(test_tensor(&tw, 5, shape, w));
    CHECK_OK(test_tensor(&tg, 5, shape, NULL));
    CHECK_OK(nfv_maco_decode(test_ctx(), mc, &tp, &ti));
    CHECK_OK(nfv_maco_adjoint(test_ctx(), mc, &tp, &ti, &tw, &tg));
    float *img = test_download(&ti), *g = test_download(&tg);
    double *want = malloc(numel * sizeof *want), *gwant = malloc(numel * sizeof *gwant);
    double *pd = malloc(vol * sizeof *pd), *wd = malloc(vol * sizeof *wd);
    for (int n = 0; n < N; n++) {
        for (size_t i = 0; i < vol; i++) pd[i] = phi[n * vol + i], wd[i] = w[n * vol + i];
        ref_maco_decode(DIMS, amp, lo, hi, pd, want + n * vol);
        ref_maco_grad(DIMS, amp, lo, hi, pd, wd, gwant + n * vol);
    }
    /* Float sums of ~15 products of values <= ~1.5: 1e-5 absolute. */
    if (img) CHECK_CLOSE("maco decode vs reference", img, want, numel, 1e-5, 1e-5);
    if (g) CHECK_CLOSE("maco adjoint vs reference gradient", g, gwant, numel, 2e-5, 1e-4);
    for (size_t i = 0; img && i < numel; i++)
        if (!(img[i] > lo && img[i] < hi)) {
            CHECK(0, "decoded voxel %zu = %g outside (%g, %g)", i, img[i], lo, hi);
            break;
        }
    /* |F(k)|^2 = (c(k)^2 + c(-k)^2) / 2 = A(k)^2 for c = A cas(t), t antisymmetric. */
    double worst = 0;
    for (size_t k = 0; k < vol; k++) {
        size_t m = ref_mirror(DIMS, k);
        double tk = 0.5 * (phi[k] - phi[m]), ck = amp[k] * (cos(tk) + sin(tk)), cm = amp[m] * (cos(tk) - sin(tk));
        worst = fmax(worst, fabs(sqrt(0.5 * (ck * ck + cm * cm)) - amp[k]));
    }
    CHECK(worst < 1e-6, "the phase leaves the magnitude at the amplitude (worst %.3g)", worst);
    free(amp);
    free(phi);
    free(w);
    free(img);
    free(g);
    free(want);
    free(gwant);
    free(pd);
    free(wd);
    nfv_tensor_free(&tp);
    nfv_tensor_free(&ti);
    nfv_tensor_free(&tw);
    nfv_tensor_free(&tg);
    nfv_maco_free(mc);
}

/* The spectrum of two volumes: the mean of their |F(k)| by the reference
 * Hartley transform, and the mean of their minima and maxima. */
TEST(maco_spectrum_is_the_mean_amplitude)
{
    size_t vol = (size_t)DIMS[0] * DIMS[1] * DIMS[2];
    float *a = test_random(vol, 11, -1, 2), *b = test_random(vol, 12, 0, 4);
    nfv_spectrum_acc *acc = NULL;
    if (!CHECK_OK(nfv_spectrum_begin(test_ctx(), DIMS[0], DIMS[1], DIMS[2], &acc))) return;
    CHECK_OK(nfv_spectrum_add(acc, a));
    CHECK_OK(nfv_spectrum_add(acc, b));
    float *amp = malloc(vol * sizeof *amp), lo, hi;
    int count = 0;
    CHECK_OK(nfv_spectrum_end(acc, amp, &lo, &hi, &count));
    nfv_spectrum_free(acc);
    double *x = malloc(vol * sizeof *x), *ha = malloc(vol * sizeof *ha), *hb = malloc(vol * sizeof *hb);
    double *want = malloc(vol * sizeof *want), mn[2] = {1e9, 1e9}, mx[2] = {-1e9, -1e9};
    for (size_t i = 0; i < vol; i++) x[i] = a[i];
    ref_hartley(DIMS, x, ha);
    for (size_t i = 0; i < vol; i++) x[i] = b[i];
    ref_hartley(DIMS, x, hb);
    for (size_t k = 0; k < vol; k++) {
        size_t m = ref_mirror(DIMS, k);
        want[k] = 0.5 * (sqrt(0.5 * (ha[k] * ha[k] + ha[m] * ha[m])) + sqrt(0.5 * (hb[k] * hb[k] + hb[m] * hb[m])));
    }
    for (size_t i = 0; i < vol; i++) {
        mn[0] = fmin(mn[0], a[i]), mx[0] = fmax(mx[0], a[i]);
        mn[1] = fmin(mn[1], b[i]), mx[1] = fmax(mx[1], b[i]);
    }
    CHECK(count == 2, "two volumes counted (%d)", count);
    CHECK_CLOSE("spectrum vs reference", amp, want, vol, 1e-5, 1e-5);
    CHECK(fabs(lo - 0.5 * (mn[0] + mn[1])) < 1e-6 && fabs(hi - 0.5 * (mx[0] + mx[1])) < 1e-6,
          "range = mean of minima and maxima (%g, %g)", lo, hi);
    /* DC: |F(0)| = |sum x| / sqrt(vol). */
    double s0 = 0;
    for (size_t i = 0; i < vol; i++) s0 += a[i];
    CHECK(fabs(sqrt(0.5 * (ha[0] * ha[0] * 2)) - fabs(s0) / sqrt((double)vol)) < 1e-9, "DC amplitude");
    free(a);
    free(b);
    free(amp);
    free(x);
    free(ha);
    free(hb);
    free(want);
}

/* MACO's crops: the box stays inside the volume, shrinks on schedule, and
 * the warp's adjoint stays exact at zoom-in scales (dot-product test). */
TEST(maco_crops_stay_inside_and_warp_adjoint_holds)
{
    const int dims[3] = {9, 10, 8}, N = 3, shape[5] = {N, 1, 9, 10, 8};
    uint64_t streams[3] = {1, 2, 3};
    CHECK(fabsf(nfv_maco_crop_at(0.9f, 0.5f, 1, 11) - 0.9f) < 1e-6f &&
              fabsf(nfv_maco_crop_at(0.9f, 0.5f, 6, 11) - 0.7f) < 1e-6f &&
              fabsf(nfv_maco_crop_at(0.9f, 0.5f, 11, 11) - 0.5f) < 1e-6f,
          "crop size shrinks linearly from MAX to MIN");
    float matrix[3 * 12];
    int inside = 1;
    for (int rep = 0; rep < 50; rep++) {
        nfv_maco_crops(streams, N, dims, 0.6f, matrix);
        for (int n = 0; n < N; n++)
            for (int a = 0; a < 3; a++) {
                float q0 = matrix[12 * n + 4 * a + 3], q1 = q0 + matrix[12 * n + 5 * a] * (dims[a] - 1);
                inside &= q0 >= 0 && q1 <= dims[a] - 1 + 1e-4f && fabsf(matrix[12 * n + 5 * a] - 0.6f) < 1e-6f;
            }
    }
    CHECK(inside, "every crop box lies inside the volume with edge 0.6");
    size_t numel = (size_t)N * 9 * 10 * 8;
    float *x = test_random(numel, 21, -1, 1), *y = test_random(numel, 22, -1, 1);
    nfv_tensor tx, ty, twx, twy;
    CHECK_OK(test_tensor(&tx, 5, shape, x));
    CHECK_OK(test_tensor(&ty, 5, shape, y));
    CHECK_OK(test_tensor(&twx, 5, shape, NULL));
    CHECK_OK(test_tensor(&twy, 5, shape, NULL));
    nfv_maco_crops(streams, N, dims, 0.45f, matrix);
    CHECK_OK(nfv_affine_warp(test_ctx(), matrix, &tx, &twx));
    CHECK_OK(nfv_affine_warp_adjoint(test_ctx(), matrix, &ty, &twy, NULL));
    float *ax = test_download(&twx), *aty = test_download(&twy);
    if (ax && aty) {
        double l = 0, r = 0, mag = 0;
        for (size_t i = 0; i < numel; i++) {
            l += (double)ax[i] * y[i];
            r += (double)x[i] * aty[i];
            mag += fabs((double)ax[i] * y[i]);
        }
        CHECK(fabs(l - r) <= 1e-5 * mag, "crop warp dot test: <Ax,y> %.9g, <x,A*y> %.9g", l, r);
    }
    free(ax);
    free(aty);
    free(x);
    free(y);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&ty);
    nfv_tensor_free(&twx);
    nfv_tensor_free(&twy);
}

/* The cube detector of test_vis.c (same spec and grid, so its kernels are
 * built once for both): input (1, 17, 19, 16), "conv(2,k7,p3) relu", channel
 * 0 +1 on the centred 3^3 cube and a zero-sum negative surround, bias 1. */
static const int IN_SHAPE[4] = {1, 17, 19, 16};

static nfv_model *blob_model(void)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k7,p3) relu flatten linear(1)", IN_SHAPE, 0, NULL,
                                             NFV_HEAD_REGRESSION, 3, &m)))
        return NULL;
    float w[2 * 343], b[2] = {1.0f, 0.0f};
    for (int z = 0; z < 7; z++)
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 7; x++)
                w[(z * 7 + y) * 7 + x] = abs(z - 3) <= 1 && abs(y - 3) <= 1 && abs(x - 3) <= 1 ? 1.0f : -27.0f / 316.0f;
    float *r = test_random(343, 5, -0.1f, 0.1f);
    memcpy(w + 343, r, sizeof(float) * 343);
    free(r);
    CHECK_OK(nfv_tensor_upload(ctx, &m->layers[0].param[0], w));
    CHECK_OK(nfv_tensor_upload(ctx, &m->layers[0].param[1], b));
    return m;
}

/* Smooth positive "brains": a few Gaussian blobs, in (D, H, W). */
static void blob_volume(float *v, unsigned long long seed)
{
    int D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3];
    double c[4][3];
    for (int i = 0; i < 4; i++) {
        c[i][0] = 2 + test_uniform(&seed) * (D - 4);
        c[i][1] = 2 + test_uniform(&seed) * (H - 4);
        c[i][2] = 2 + test_uniform(&seed) * (W - 4);
    }
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double s = 0.05;
                for (int i = 0; i < 4; i++) {
                    double d2 = (z - c[i][0]) * (z - c[i][0]) + (y - c[i][1]) * (y - c[i][1]) +
                                (x - c[i][2]) * (x - c[i][2]);
                    s += exp(-d2 / 8.0);
                }
                v[((size_t)z * H + y) * W + x] = (float)s;
            }
}

/* The loop with --param maco and MACO's crops raises a neuron's objective
 * from its start, and the image stays in the cohort's range. */
TEST(maco_loop_raises_the_objective)
{
    nfv_model *m = blob_model();
    if (!m) return;
    size_t vol = (size_t)IN_SHAPE[1] * IN_SHAPE[2] * IN_SHAPE[3];
    float *v = malloc(vol * sizeof *v);
    nfv_spectrum_acc *acc = NULL;
    m->spectrum = malloc(vol * sizeof *m->spectrum);
    if (!CHECK_OK(nfv_spectrum_begin(test_ctx(), IN_SHAPE[1], IN_SHAPE[2], IN_SHAPE[3], &acc))) return;
    for (int i = 0; i < 6; i++) {
        blob_volume(v, 100 + i);
        CHECK_OK(nfv_spectrum_add(acc, v));
    }
    CHECK_OK(nfv_spectrum_end(acc, m->spectrum, &m->spectrum_lo, &m->spectrum_hi, &m->spectrum_subjects));
    nfv_spectrum_free(acc);
    nfv_target *t = NULL;
    int nt = 0;
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    CHECK_OK(nfv_vis_options_parse(&o, "--param maco --steps 40 --lr 0.1 --crop 1,0.8 --noise 0.02"));
    nfv_vis_result *r = NULL;
    if (CHECK_OK(nfv_target_parse(m, "conv1:0@", &t, &nt)) &&
        CHECK_OK(nfv_visualize(test_ctx(), m, t, nt, &o, NULL, NULL, &r))) {
        float first = r[0].log_objective[0];
        CHECK(r[0].objective_clean > first + 0.1f, "maco raises conv1:0@ from %.4f to %.4f", first,
              r[0].objective_clean);
        float lo = 1e30f, hi = -1e30f;
        for (size_t i = 0; i < vol; i++) lo = fminf(lo, r[0].volume.data[i]), hi = fmaxf(hi, r[0].volume.data[i]);
        CHECK(lo >= m->spectrum_lo && hi <= m->spectrum_hi, "image in the cohort's range [%g, %g]: [%g, %g]",
              m->spectrum_lo, m->spectrum_hi, lo, hi);
        nfv_vis_results_free(r, nt);
    }
    free(t);
    free(v);
    nfv_model_free(m);
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

/* CLI: --param maco on a model without a spectrum is one line naming
 * `neurofv spectrum`; the command adds it (the file still loads, with the
 * subjects counted); then visualize --param maco runs. */
TEST(maco_cli_spectrum_then_visualize)
{
    nfv_model *m = blob_model();
    if (!m) return;
    char dir[512], model[600], csv[600], cmd[3000], out[700], err[700];
    snprintf(dir, sizeof dir, "%s/maco_cli", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(model, sizeof model, "%s/m.safetensors", dir);
    snprintf(csv, sizeof csv, "%s/data.csv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    CHECK_OK(nfv_model_save(m, model));
    FILE *f = fopen(csv, "w");
    if (!CHECK(f != NULL, "write %s", csv)) return;
    fprintf(f, "path,label,split\n");
    nfv_volume v;
    for (int i = 0; i < 4; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/s%d.nii.gz", dir, i);
        if (!CHECK_OK(nfv_volume_alloc(&v, IN_SHAPE[3], IN_SHAPE[2], IN_SHAPE[1], (const double(*)[4])m->affine)))
            break;
        blob_volume(v.data, 200 + i);
        CHECK_OK(nfv_volume_write(p, &v));
        nfv_volume_free(&v);
        fprintf(f, "s%d.nii.gz,%d.5,%s\n", i, 60 + i, i < 3 ? "train" : "val");
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target conv1:0@ --out %s --steps 2 --param maco --background none",
             test_bin(), model, out);
    int rc = test_run(cmd, err);
    CHECK(rc != 0 && file_has(err, "neurofv spectrum"), "no spectrum: refused (rc %d) naming neurofv spectrum", rc);
    snprintf(cmd, sizeof cmd, "%s spectrum --data %s --model %s", test_bin(), csv, model);
    CHECK(test_run(cmd, err) == 0 && file_has(err, "spectrum of 3 subjects"), "neurofv spectrum runs on the 3 train rows");
    nfv_model *back = NULL;
    if (CHECK_OK(nfv_model_load(test_ctx(), model, &back))) {
        CHECK(back->spectrum && back->spectrum_subjects == 3 && back->spectrum_lo < back->spectrum_hi,
              "the model file carries the spectrum of 3 subjects, range [%g, %g]", back->spectrum_lo,
              back->spectrum_hi);
        nfv_model_free(back);
    }
    snprintf(cmd, sizeof cmd,
             "%s visualize --model %s --target conv1:0@ --out %s --steps 3 --param maco --crop 0.9,0.7 --noise 0.05 "
             "--background none", test_bin(), model, out);
    CHECK(test_run(cmd, err) == 0, "visualize --param maco runs: %s", cmd);
    char json[800];
    snprintf(json, sizeof json, "%s/conv1_0_at_8_9_8.json", out);
    CHECK(file_has(json, "\"maco\"") && file_has(json, "crop_max"), "the log records param maco and the crops");
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target conv1:0@ --out %s --steps 1 --crop 0.9,0.7 --jitter 2",
             test_bin(), model, out);
    CHECK(test_run(cmd, err) != 0 && file_has(err, "--crop"), "--crop with --jitter is refused");
    nfv_model_free(m);
}
