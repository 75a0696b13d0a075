/* Losses (src/loss.c, cl/loss.cl) against the double references in
 * tests/ref_dense.c, their gradients against central finite differences of
 * those references, extreme logits, invalid labels and bad shapes.  Batches
 * of 1, 3 and 130 (more than one work-group's worth of samples, so the
 * strided loop and the reduction both run), and against torch.nn.functional
 * itself through /usr/bin/python3 when torch is installed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_dense.h"
#include "test.h"

static double *to_double(const float *f, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

static int all_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

/* Context for the finite-difference objectives below. */
typedef struct loss_case {
    int kind; /* 0 softmax CE, 1 BCE, 2 MSE, 3 Huber (delta in pos_weight) */
    int n, k;
    const int *labels;
    const double *weights, *targets;
    double pos_weight;
} loss_case;

static double ref_loss(const loss_case *c, const double *z, double *grad)
{
    switch (c->kind) {
    case 0: return ref_softmax_cross_entropy(c->n, c->k, z, c->labels, c->weights, grad);
    case 1: return ref_bce_with_logits(c->n, z, c->targets, c->pos_weight, grad);
    case 2: return ref_mse_loss(c->n, z, c->targets, grad);
    default: return ref_huber_loss(c->n, z, c->targets, c->pos_weight, grad);
    }
}

/* Central differences of the reference loss in double w.r.t. every logit. */
static void finite_diff(const loss_case *c, double *z, size_t count, double *grad)
{
    const double h = 1e-5;
    for (size_t i = 0; i < count; i++) {
        const double keep = z[i];
        z[i] = keep + h;
        const double up = ref_loss(c, z, NULL);
        z[i] = keep - h;
        const double down = ref_loss(c, z, NULL);
        z[i] = keep;
        grad[i] = (up - down) / (2 * h);
    }
}

/* Run the device loss for case c on logits zf; compare loss and gradient with
 * the reference and (when fd) the gradient with finite differences. */
static void check_case(const loss_case *c, const float *zf, const char *what, int fd)
{
    nfv_context *ctx = test_ctx();
    const size_t count = (size_t)c->n * (c->kind == 0 ? c->k : 1);
    double *z = to_double(zf, count), *want_grad = malloc(count * sizeof *want_grad);
    const double want_loss = ref_loss(c, z, want_grad);

    float *aux = malloc((size_t)(c->n > c->k ? c->n : c->k) * sizeof *aux);
    nfv_tensor tz, taux, tw, tloss, tgrad;
    memset(&tw, 0, sizeof tw);
    int sz[2] = {c->n, c->kind == 0 ? c->k : 1}, sn[1] = {c->n}, sk[1] = {c->k}, s1[1] = {1};
    for (int i = 0; i < c->n; i++) aux[i] = c->kind == 0 ? (float)c->labels[i] : (float)c->targets[i];
    int ok = CHECK_OK(test_tensor(&tz, 2, sz, zf)) && CHECK_OK(test_tensor(&taux, 1, sn, aux)) &&
             CHECK_OK(test_tensor(&tloss, 1, s1, NULL)) && CHECK_OK(test_tensor(&tgrad, 2, sz, NULL));
    if (ok && c->kind == 0 && c->weights) {
        for (int j = 0; j < c->k; j++) aux[j] = (float)c->weights[j];
        ok = CHECK_OK(test_tensor(&tw, 1, sk, aux));
    }
    nfv_status s = NFV_OK;
    if (ok) {
        if (c->kind == 0) s = nfv_softmax_cross_entropy(ctx, &tz, &taux, c->weights ? &tw : NULL, &tloss, &tgrad);
        else if (c->kind == 1) s = nfv_bce_with_logits(ctx, &tz, &taux, (float)c->pos_weight, &tloss, &tgrad);
        else if (c->kind == 2) s = nfv_mse_loss(ctx, &tz, &taux, &tloss, &tgrad);
        else s = nfv_huber_loss(ctx, &tz, &taux, (float)c->pos_weight, &tloss, &tgrad);
        ok = CHECK_OK(s);
    }
    if (ok) {
        float *loss = test_download(&tloss), *grad = test_download(&tgrad);
        if (loss && grad) {
            CHECK(all_finite(loss, 1) && all_finite(grad, count), "%s: loss and gradient finite", what);
            /* float32 log-sum-exp and sums over <= 130 samples: relative
             * error ~1e-6; 1e-5 relative plus 1e-6 absolute. */
            CHECK_CLOSE(what, loss, &want_loss, 1, 1e-6, 1e-5);
            /* Gradient entries are O(1/N); float32 softmax/sigmoid rounding
             * is ~1e-7 of that. */
            CHECK_CLOSE(what, grad, want_grad, count, 1e-6, 1e-4);
            if (fd) {
                double *fd_grad = malloc(count * sizeof *fd_grad);
                finite_diff(c, z, count, fd_grad);
                /* Central differences with h = 1e-5 in double: truncation
                 * ~h^2 * f''' and cancellation ~1e-16 / h, both < 1e-9. */
                CHECK_CLOSE(what, grad, fd_grad, count, 2e-6, 1e-4);
                free(fd_grad);
            }
        }
        free(loss), free(grad);

        /* Without a gradient tensor the loss is the same. */
        if (c->kind == 0) s = nfv_softmax_cross_entropy(ctx, &tz, &taux, c->weights ? &tw : NULL, &tloss, NULL);
        else if (c->kind == 1) s = nfv_bce_with_logits(ctx, &tz, &taux, (float)c->pos_weight, &tloss, NULL);
        else if (c->kind == 2) s = nfv_mse_loss(ctx, &tz, &taux, &tloss, NULL);
        else s = nfv_huber_loss(ctx, &tz, &taux, (float)c->pos_weight, &tloss, NULL);
        if (CHECK_OK(s)) {
            loss = test_download(&tloss);
            if (loss) CHECK_CLOSE(what, loss, &want_loss, 1, 1e-6, 1e-5);
            free(loss);
        }
    }
    nfv_tensor_free(&tz), nfv_tensor_free(&taux), nfv_tensor_free(&tw), nfv_tensor_free(&tloss);
    nfv_tensor_free(&tgrad);
    free(z), free(want_grad), free(aux);
}

static int *random_labels(int n, int k, unsigned seed)
{
    int *labels = malloc((size_t)n * sizeof *labels);
    unsigned long long s = seed;
    for (int i = 0; i < n; i++) labels[i] = (int)(test_uniform(&s) * k) % k;
    return labels;
}

TEST(loss_softmax_cross_entropy)
{
    static const int shapes[][2] = {{1, 3}, {3, 7}, {130, 3}, {3, 1}};
    const double weights[7] = {0.5, 2.0, 1.0, 3.0, 0.25, 1.5, 0.75};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], k = shapes[s][1];
        int *labels = random_labels(n, k, 40 + (unsigned)s);
        float *z = test_random((size_t)n * k, 41 + (unsigned)s, -4, 4);
        loss_case c = {0, n, k, labels, NULL, NULL, 1.0};
        check_case(&c, z, "softmax CE", n <= 3);
        c.weights = weights;
        check_case(&c, z, "softmax CE, class weights", n <= 3);
        free(labels), free(z);
    }
}

TEST(loss_softmax_cross_entropy_extreme_logits)
{
    const int n = 3, k = 7;
    int *labels = random_labels(n, k, 50);
    float *z = test_random((size_t)n * k, 51, -1, 1);
    for (int i = 0; i < n * k; i++) z[i] = z[i] < 0 ? -50.0f : 50.0f;
    z[0 * k + labels[0]] = -50.0f; /* a confidently wrong sample: loss ~100 */
    const double weights[7] = {1, 2, 3, 4, 5, 6, 7};
    loss_case c = {0, n, k, labels, weights, NULL, 1.0};
    check_case(&c, z, "softmax CE, logits +-50", 0);
    free(labels), free(z);
}

TEST(loss_softmax_cross_entropy_invalid_label_is_nan)
{
    nfv_context *ctx = test_ctx();
    const float z[6] = {0, 1, 2, 3, 4, 5}, labels[2] = {1, 3}; /* 3 is out of range for K = 3 */
    nfv_tensor tz, tl, tloss;
    int sz[2] = {2, 3}, sl[1] = {2}, s1[1] = {1};
    if (CHECK_OK(test_tensor(&tz, 2, sz, z)) && CHECK_OK(test_tensor(&tl, 1, sl, labels)) &&
        CHECK_OK(test_tensor(&tloss, 1, s1, NULL)) &&
        CHECK_OK(nfv_softmax_cross_entropy(ctx, &tz, &tl, NULL, &tloss, NULL))) {
        float *loss = test_download(&tloss);
        if (loss) CHECK(isnan(loss[0]), "label out of range gives a NaN loss, got %g", loss[0]);
        free(loss);
    }
    nfv_tensor_free(&tz), nfv_tensor_free(&tl), nfv_tensor_free(&tloss);
}

TEST(loss_bce_with_logits)
{
    static const int sizes[] = {1, 3, 130};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int n = sizes[s];
        float *z = test_random((size_t)n, 60 + (unsigned)s, -5, 5);
        float *tf = test_random((size_t)n, 61 + (unsigned)s, 0, 1);
        double *t = malloc((size_t)n * sizeof *t);
        for (int i = 0; i < n; i++) t[i] = tf[i] < 0.5f ? 0.0 : 1.0;
        loss_case c = {1, n, 1, NULL, NULL, t, 1.0};
        check_case(&c, z, "BCE with logits", n <= 3);
        c.pos_weight = 2.5;
        check_case(&c, z, "BCE with logits, pos_weight 2.5", n <= 3);
        /* Extreme logits, both signs, with both targets. */
        for (int i = 0; i < n; i++) z[i] = (i % 2) ? 50.0f : -50.0f;
        check_case(&c, z, "BCE with logits +-50", 0);
        free(z), free(tf), free(t);
    }
}

TEST(loss_mse)
{
    static const int sizes[] = {1, 3, 130};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int n = sizes[s];
        float *p = test_random((size_t)n, 70 + (unsigned)s, -3, 3);
        float *tf = test_random((size_t)n, 71 + (unsigned)s, 20, 80); /* brain-age-like targets */
        double *t = to_double(tf, (size_t)n);
        loss_case c = {2, n, 1, NULL, NULL, t, 1.0};
        check_case(&c, p, "MSE", n <= 3);
        free(p), free(tf), free(t);
    }
}

/* Huber over standardized-looking residuals: some inside the quadratic zone
 * (|d| <= delta), some on the linear tails, for delta 1 (the training
 * default) and 0.3.  The finite-difference check (n <= 3) moves residuals
 * that fall within 1e-3 of a kink +-delta away from it: there the loss has
 * no second derivative and central differences of width 2e-5 would straddle
 * the kink. */
TEST(loss_huber)
{
    static const int sizes[] = {1, 3, 130};
    static const double deltas[] = {1.0, 0.3};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t d = 0; d < 2; d++) {
            const int n = sizes[s];
            float *p = test_random((size_t)n, 90 + (unsigned)s, -3, 3);
            float *tf = test_random((size_t)n, 91 + (unsigned)s, -1, 1);
            for (int i = 0; i < n; i++) {
                double r = fabs((double)p[i] - tf[i]);
                if (fabs(r - deltas[d]) < 1e-3) p[i] += 0.01f;
            }
            double *t = to_double(tf, (size_t)n);
            loss_case c = {3, n, 1, NULL, NULL, t, deltas[d]};
            char what[64];
            snprintf(what, sizeof what, "Huber delta %g, N %d", deltas[d], n);
            check_case(&c, p, what, n <= 3);
            free(p), free(tf), free(t);
        }
    /* Hand-made: delta 1, residuals 0.5 (quadratic: 0.125, grad 0.5/2) and
     * -3 (linear: 1 * (3 - 0.5) = 2.5, grad -1/2); mean 1.3125. */
    const float pr[2] = {1.5f, -3.0f};
    double tt[2] = {1.0, 0.0};
    loss_case c = {3, 2, 1, NULL, NULL, tt, 1.0};
    double g[2];
    double l = ref_huber_loss(2, (const double[]){1.5, -3.0}, tt, 1.0, g);
    CHECK(fabs(l - 1.3125) < 1e-12 && fabs(g[0] - 0.25) < 1e-12 && fabs(g[1] + 0.5) < 1e-12,
          "Huber reference by hand: loss %g (1.3125), grad %g %g (0.25 -0.5)", l, g[0], g[1]);
    check_case(&c, pr, "Huber by hand", 1);
}

TEST(loss_bad_shapes)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor z, z2, labels, labels_bad, w_bad, loss, loss_bad, grad_bad;
    int sz[2] = {3, 7}, sz2[2] = {3, 2}, sl[1] = {3}, slb[1] = {4}, swb[1] = {6}, s1[1] = {1}, s2[1] = {2},
        sgb[2] = {7, 3};
    if (!CHECK_OK(test_tensor(&z, 2, sz, NULL)) || !CHECK_OK(test_tensor(&z2, 2, sz2, NULL)) ||
        !CHECK_OK(test_tensor(&labels, 1, sl, NULL)) || !CHECK_OK(test_tensor(&labels_bad, 1, slb, NULL)) ||
        !CHECK_OK(test_tensor(&w_bad, 1, swb, NULL)) || !CHECK_OK(test_tensor(&loss, 1, s1, NULL)) ||
        !CHECK_OK(test_tensor(&loss_bad, 1, s2, NULL)) || !CHECK_OK(test_tensor(&grad_bad, 2, sgb, NULL)))
        return;
    nfv_status s = nfv_softmax_cross_entropy(ctx, &z, &labels_bad, NULL, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "CE labels length mismatch rejected, got %s", nfv_status_name(s));
    CHECK(strstr(nfv_error_message(), "cross-entropy") != NULL, "message names the op: %s", nfv_error_message());
    s = nfv_softmax_cross_entropy(ctx, &z, &labels, &w_bad, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "CE class weights length mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_softmax_cross_entropy(ctx, &z, &labels, NULL, &loss_bad, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "CE loss of 2 elements rejected, got %s", nfv_status_name(s));
    s = nfv_softmax_cross_entropy(ctx, &z, &labels, NULL, &loss, &grad_bad);
    CHECK(s == NFV_ERR_INVALID_ARG, "CE transposed gradient rejected, got %s", nfv_status_name(s));
    s = nfv_bce_with_logits(ctx, &z2, &labels, 1.0f, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "BCE with (N, 2) logits rejected, got %s", nfv_status_name(s));
    s = nfv_bce_with_logits(ctx, &labels, &labels, -1.0f, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "BCE negative pos_weight rejected, got %s", nfv_status_name(s));
    s = nfv_bce_with_logits(ctx, &labels, &labels_bad, 1.0f, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "BCE targets length mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_mse_loss(ctx, &labels, &labels_bad, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "MSE targets length mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_mse_loss(ctx, &labels, &labels, &loss, &labels_bad);
    CHECK(s == NFV_ERR_INVALID_ARG, "MSE gradient length mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_huber_loss(ctx, &labels, &labels_bad, 1.0f, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "Huber targets length mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_huber_loss(ctx, &labels, &labels, 0.0f, &loss, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "delta"), "Huber delta 0 rejected: %s",
          nfv_error_message());
    /* A per-sample column may be (N) or (N, 1) on either side. */
    nfv_tensor column;
    int sc[2] = {3, 1};
    if (CHECK_OK(test_tensor(&column, 2, sc, NULL))) {
        CHECK_OK(nfv_mse_loss(ctx, &labels, &labels, &loss, &column));
        CHECK_OK(nfv_bce_with_logits(ctx, &column, &labels, 1.0f, &loss, &labels));
        nfv_tensor_free(&column);
    }
    nfv_tensor_free(&z), nfv_tensor_free(&z2), nfv_tensor_free(&labels), nfv_tensor_free(&labels_bad);
    nfv_tensor_free(&w_bad), nfv_tensor_free(&loss), nfv_tensor_free(&loss_bad), nfv_tensor_free(&grad_bad);
}

/* The four losses and their gradients in torch itself (skipped without
 * torch): confirms the reading of PyTorch's weighted mean and pos_weight,
 * not only agreement with our own reference.  Inputs: logits (N, K) =
 * (5, 3), labels, class weights (K), BCE logits/targets (N), pos_weight 2.5. */
static const char *TORCH_LOSS_SCRIPT =
    "import sys, numpy as np, torch, torch.nn.functional as F\n"
    "d = np.fromfile(sys.argv[1], dtype='<f4').astype(np.float64)\n"
    "n, k = 5, 3\n"
    "z = torch.tensor(d[:n*k].reshape(n, k), requires_grad=True); o = n*k\n"
    "y = torch.tensor(d[o:o+n]).long(); o += n\n"
    "w = torch.tensor(d[o:o+k]); o += k\n"
    "b = torch.tensor(d[o:o+n], requires_grad=True); o += n\n"
    "t = torch.tensor(d[o:o+n]); o += n\n"
    "out = []\n"
    "for loss in (lambda: F.cross_entropy(z, y, weight=w),\n"
    "             lambda: F.binary_cross_entropy_with_logits(b, t, pos_weight=torch.tensor(2.5, dtype=torch.float64)),\n"
    "             lambda: F.mse_loss(b, t),\n"
    "             lambda: F.huber_loss(b, t, delta=0.7)):\n"
    "    z.grad = None; b.grad = None\n"
    "    l = loss(); l.backward()\n"
    "    g = z.grad if z.grad is not None else b.grad\n"
    "    out += [l.detach().reshape(1), g.reshape(-1)]\n"
    "torch.cat(out).numpy().astype('<f8').tofile(sys.argv[2])\n";

TEST(loss_matches_torch)
{
    if (test_run("/usr/bin/python3 -c 'import torch, numpy'", NULL) != 0) {
        printf("     skipped: /usr/bin/python3 with torch and numpy not available\n");
        return;
    }
    nfv_context *ctx = test_ctx();
    enum { N = 5, K = 3 };
    float z[N * K], labels[N] = {0, 2, 1, 2, 0}, weights[K] = {0.5f, 2.0f, 1.25f}, b[N], t[N] = {1, 0, 1, 1, 0};
    float *rz = test_random(N * K, 80, -6, 6), *rb = test_random(N, 81, -6, 6);
    memcpy(z, rz, sizeof z);
    memcpy(b, rb, sizeof b);
    free(rz), free(rb);
    char script[600], in_path[600], out_path[600], cmd[2000], log[600];
    snprintf(script, sizeof script, "%s/loss_torch.py", test_tmpdir());
    snprintf(in_path, sizeof in_path, "%s/loss_in.bin", test_tmpdir());
    snprintf(out_path, sizeof out_path, "%s/loss_out.bin", test_tmpdir());
    snprintf(log, sizeof log, "%s/loss_torch.log", test_tmpdir());
    FILE *f = fopen(script, "w");
    int ok = CHECK(f && fputs(TORCH_LOSS_SCRIPT, f) >= 0, "write %s", script);
    if (f) ok = CHECK(fclose(f) == 0, "close %s", script) && ok;
    f = ok ? fopen(in_path, "wb") : NULL;
    if (f) {
        size_t w = fwrite(z, sizeof(float), N * K, f) + fwrite(labels, sizeof(float), N, f) +
                   fwrite(weights, sizeof(float), K, f) + fwrite(b, sizeof(float), N, f) + fwrite(t, sizeof(float), N, f);
        ok = CHECK(fclose(f) == 0 && w == N * K + 3 * N + K, "write %s", in_path);
    } else ok = 0;
    /* loss + grad for CE (1 + N*K), BCE (1 + N), MSE (1 + N), Huber (1 + N), in double. */
    enum { TOTAL = 1 + N * K + 3 * (1 + N) };
    double want[TOTAL];
    if (ok) {
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' '%s'", script, in_path, out_path);
        ok = CHECK(test_run(cmd, log) == 0, "torch loss script ran (log in %s)", log);
    }
    if (ok) {
        f = fopen(out_path, "rb");
        ok = CHECK(f && fread(want, sizeof(double), TOTAL, f) == TOTAL, "read %s", out_path);
        if (f) fclose(f);
    }
    nfv_tensor tz, tl, tw, tb, tt, tloss, tgz, tgb;
    int sz[2] = {N, K}, sn[1] = {N}, sk[1] = {K}, s1[1] = {1}, sb[2] = {N, 1};
    if (ok && CHECK_OK(test_tensor(&tz, 2, sz, z)) && CHECK_OK(test_tensor(&tl, 1, sn, labels)) &&
        CHECK_OK(test_tensor(&tw, 1, sk, weights)) && CHECK_OK(test_tensor(&tb, 2, sb, b)) &&
        CHECK_OK(test_tensor(&tt, 1, sn, t)) && CHECK_OK(test_tensor(&tloss, 1, s1, NULL)) &&
        CHECK_OK(test_tensor(&tgz, 2, sz, NULL)) && CHECK_OK(test_tensor(&tgb, 2, sb, NULL))) {
        /* float32 device vs torch in float64: same tolerances as against
         * the double reference. */
        const double *w = want;
        if (CHECK_OK(nfv_softmax_cross_entropy(ctx, &tz, &tl, &tw, &tloss, &tgz))) {
            float *l = test_download(&tloss), *g = test_download(&tgz);
            if (l && g) {
                CHECK_CLOSE("torch cross_entropy(weight=) loss", l, w, 1, 1e-6, 1e-5);
                CHECK_CLOSE("torch cross_entropy(weight=) grad", g, w + 1, N * K, 1e-6, 1e-4);
            }
            free(l), free(g);
        }
        w += 1 + N * K;
        if (CHECK_OK(nfv_bce_with_logits(ctx, &tb, &tt, 2.5f, &tloss, &tgb))) {
            float *l = test_download(&tloss), *g = test_download(&tgb);
            if (l && g) {
                CHECK_CLOSE("torch BCE with logits (pos_weight 2.5) loss", l, w, 1, 1e-6, 1e-5);
                CHECK_CLOSE("torch BCE with logits (pos_weight 2.5) grad", g, w + 1, N, 1e-6, 1e-4);
            }
            free(l), free(g);
        }
        w += 1 + N;
        if (CHECK_OK(nfv_mse_loss(ctx, &tb, &tt, &tloss, &tgb))) {
            float *l = test_download(&tloss), *g = test_download(&tgb);
            if (l && g) {
                CHECK_CLOSE("torch mse_loss loss", l, w, 1, 1e-6, 1e-5);
                CHECK_CLOSE("torch mse_loss grad", g, w + 1, N, 1e-6, 1e-4);
            }
            free(l), free(g);
        }
        w += 1 + N;
        if (CHECK_OK(nfv_huber_loss(ctx, &tb, &tt, 0.7f, &tloss, &tgb))) {
            float *l = test_download(&tloss), *g = test_download(&tgb);
            if (l && g) {
                CHECK_CLOSE("torch huber_loss(delta=0.7) loss", l, w, 1, 1e-6, 1e-5);
                CHECK_CLOSE("torch huber_loss(delta=0.7) grad", g, w + 1, N, 1e-6, 1e-4);
            }
            free(l), free(g);
        }
        nfv_tensor_free(&tz), nfv_tensor_free(&tl), nfv_tensor_free(&tw), nfv_tensor_free(&tb);
        nfv_tensor_free(&tt), nfv_tensor_free(&tloss), nfv_tensor_free(&tgz), nfv_tensor_free(&tgb);
    }
}
