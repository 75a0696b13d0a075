/* Optimizers (src/optim.c, cl/optim.cl): several steps of Adam, AdamW and
 * SGD (with and without momentum) against the double reference of PyTorch's
 * update formulas in tests/ref_dense.c, and against torch.optim itself
 * through /usr/bin/python3 when torch is installed (skipped otherwise).
 * Parameters are 7x9x11 (odd sizes), gradients change every step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_dense.h"
#include "test.h"

enum { STEPS = 5 };
static const int PARAM_SHAPE[3] = {7, 9, 11};
#define PARAM_COUNT (7 * 9 * 11)

/* The configurations every test runs, in this order (the torch script
 * below mirrors it). */
typedef struct optim_config {
    const char *name;
    int adam, decoupled;
    float lr, beta1, beta2, eps, weight_decay, momentum;
} optim_config;
static const optim_config CONFIGS[] = {
    {"Adam, L2 weight decay", 1, 0, 0.05f, 0.9f, 0.999f, 1e-8f, 0.01f, 0},
    {"AdamW, decoupled weight decay", 1, 1, 0.05f, 0.8f, 0.99f, 1e-6f, 0.1f, 0},
    {"SGD, momentum + weight decay", 0, 0, 0.1f, 0, 0, 0, 0.01f, 0.9f},
    {"SGD, plain", 0, 0, 0.1f, 0, 0, 0, 0, 0},
};
#define CONFIG_COUNT (sizeof CONFIGS / sizeof CONFIGS[0])

/* Run STEPS device updates of config c from param0 with grads[step]; the
 * result goes to out (PARAM_COUNT floats).  Returns 0 on a failed check. */
static int run_device(const optim_config *c, const float *param0, float *const *grads, float *out)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor p, g, m, v;
    int ok = CHECK_OK(test_tensor(&p, 3, PARAM_SHAPE, param0)) && CHECK_OK(test_tensor(&g, 3, PARAM_SHAPE, NULL)) &&
             CHECK_OK(test_tensor(&m, 3, PARAM_SHAPE, NULL)) && CHECK_OK(test_tensor(&v, 3, PARAM_SHAPE, NULL));
    for (int step = 1; ok && step <= STEPS; step++) {
        ok = CHECK_OK(nfv_tensor_upload(ctx, &g, grads[step - 1]));
        if (!ok) break;
        if (c->adam) {
            nfv_adam_params hp = {c->lr, c->beta1, c->beta2, c->eps, c->weight_decay, c->decoupled};
            ok = CHECK_OK(nfv_adam_step(ctx, &hp, step, &p, &g, &m, &v));
        } else {
            nfv_sgd_params hp = {c->lr, c->momentum, c->weight_decay};
            /* Plain SGD needs no velocity: pass NULL to prove it. */
            ok = CHECK_OK(nfv_sgd_step(ctx, &hp, &p, &g, c->momentum != 0 ? &m : NULL));
        }
    }
    if (ok) ok = CHECK_OK(nfv_tensor_download(ctx, &p, out));
    nfv_tensor_free(&p), nfv_tensor_free(&g), nfv_tensor_free(&m), nfv_tensor_free(&v);
    return ok;
}

/* Deterministic inputs: param0 in [-1, 1], per-step gradients in [-1, 1]
 * with a few exact zeros (Adam's eps then matters). */
static void make_inputs(float **param0, float **grads)
{
    *param0 = test_random(PARAM_COUNT, 90, -1, 1);
    for (int s = 0; s < STEPS; s++) {
        grads[s] = test_random(PARAM_COUNT, 91 + (unsigned)s, -1, 1);
        for (int i = s; i < PARAM_COUNT; i += 97) grads[s][i] = 0.0f;
    }
}

TEST(optim_matches_reference)
{
    float *param0, *grads[STEPS], out[PARAM_COUNT];
    make_inputs(&param0, grads);
    for (size_t ci = 0; ci < CONFIG_COUNT; ci++) {
        const optim_config *c = &CONFIGS[ci];
        double p[PARAM_COUNT], m[PARAM_COUNT] = {0}, v[PARAM_COUNT] = {0}, g[PARAM_COUNT];
        for (int i = 0; i < PARAM_COUNT; i++) p[i] = param0[i];
        for (int step = 1; step <= STEPS; step++) {
            for (int i = 0; i < PARAM_COUNT; i++) g[i] = grads[step - 1][i];
            /* Hyper-parameters as the float values the device receives. */
            if (c->adam)
                ref_adam_step(PARAM_COUNT, c->lr, c->beta1, c->beta2, c->eps, c->weight_decay, c->decoupled, step, p,
                              g, m, v);
            else
                ref_sgd_step(PARAM_COUNT, c->lr, c->momentum, c->weight_decay, p, g, m);
        }
        if (run_device(c, param0, grads, out))
            /* Five float32 updates of size <= lr * O(1): rounding ~1e-7 each,
             * plus Adam's m / sqrt(v) division amplifying it mildly. */
            CHECK_CLOSE(c->name, out, p, PARAM_COUNT, 2e-6, 1e-5);
    }
    free(param0);
    for (int s = 0; s < STEPS; s++) free(grads[s]);
}

/* The same runs in torch.optim: the script reads param0 and the gradients
 * (float32, little-endian) and writes the final parameters of each config. */
static const char *TORCH_SCRIPT =
    "import sys, numpy as np, torch\n"
    "n, steps = int(sys.argv[3]), int(sys.argv[4])\n"
    "data = np.fromfile(sys.argv[1], dtype='<f4')\n"
    "p0, grads = data[:n], data[n:].reshape(steps, n)\n"
    "configs = [\n"
    "  lambda q: torch.optim.Adam([q], lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),\n"
    "  lambda q: torch.optim.AdamW([q], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),\n"
    "  lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.9, weight_decay=0.01),\n"
    "  lambda q: torch.optim.SGD([q], lr=0.1),\n"
    "]\n"
    "out = []\n"
    "for make in configs:\n"
    "    q = torch.nn.Parameter(torch.from_numpy(p0.copy()))\n"
    "    opt = make(q)\n"
    "    for s in range(steps):\n"
    "        q.grad = torch.from_numpy(grads[s].copy())\n"
    "        opt.step()\n"
    "    out.append(q.detach().numpy().astype('<f4'))\n"
    "np.concatenate(out).tofile(sys.argv[2])\n";

TEST(optim_matches_torch)
{
    if (test_run("/usr/bin/python3 -c 'import torch, numpy'", NULL) != 0) {
        printf("     skipped: /usr/bin/python3 with torch and numpy not available\n");
        return;
    }
    float *param0, *grads[STEPS];
    make_inputs(&param0, grads);
    char script[600], in_path[600], out_path[600], cmd[2200], log[600];
    snprintf(script, sizeof script, "%s/optim_torch.py", test_tmpdir());
    snprintf(in_path, sizeof in_path, "%s/optim_in.bin", test_tmpdir());
    snprintf(out_path, sizeof out_path, "%s/optim_out.bin", test_tmpdir());
    snprintf(log, sizeof log, "%s/optim_torch.log", test_tmpdir());
    FILE *f = fopen(script, "w");
    int ok = CHECK(f != NULL, "write %s", script);
    if (f) ok = CHECK(fputs(TORCH_SCRIPT, f) >= 0 && fclose(f) == 0, "write %s", script) && ok;
    f = ok ? fopen(in_path, "wb") : NULL;
    if (f) {
        /* The test machine is little-endian, as the script assumes. */
        size_t written = fwrite(param0, sizeof(float), PARAM_COUNT, f);
        for (int s = 0; s < STEPS; s++) written += fwrite(grads[s], sizeof(float), PARAM_COUNT, f);
        ok = CHECK(fclose(f) == 0 && written == (size_t)PARAM_COUNT * (STEPS + 1), "write %s", in_path);
    } else ok = 0;
    float *torch_out = malloc(CONFIG_COUNT * PARAM_COUNT * sizeof *torch_out);
    if (ok) {
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' '%s' %d %d", script, in_path, out_path, PARAM_COUNT,
                 STEPS);
        ok = CHECK(test_run(cmd, log) == 0, "torch script ran (log in %s)", log);
    }
    if (ok) {
        f = fopen(out_path, "rb");
        ok = CHECK(f && fread(torch_out, sizeof(float), CONFIG_COUNT * PARAM_COUNT, f) == CONFIG_COUNT * PARAM_COUNT,
                   "read %s", out_path);
        if (f) fclose(f);
    }
    for (size_t ci = 0; ok && ci < CONFIG_COUNT; ci++) {
        float out[PARAM_COUNT];
        double want[PARAM_COUNT];
        for (int i = 0; i < PARAM_COUNT; i++) want[i] = torch_out[ci * PARAM_COUNT + i];
        /* float32 against float32 with the same formulas: only operation
         * order differs; the reference test's budget holds. */
        if (run_device(&CONFIGS[ci], param0, grads, out)) CHECK_CLOSE(CONFIGS[ci].name, out, want, PARAM_COUNT, 2e-6, 1e-5);
    }
    free(torch_out);
    free(param0);
    for (int s = 0; s < STEPS; s++) free(grads[s]);
}

TEST(optim_bad_arguments)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor p, g_bad, m, v;
    int s_bad[3] = {7, 9, 10};
    if (!CHECK_OK(test_tensor(&p, 3, PARAM_SHAPE, NULL)) || !CHECK_OK(test_tensor(&g_bad, 3, s_bad, NULL)) ||
        !CHECK_OK(test_tensor(&m, 3, PARAM_SHAPE, NULL)) || !CHECK_OK(test_tensor(&v, 3, PARAM_SHAPE, NULL)))
        return;
    nfv_adam_params adam = {0.01f, 0.9f, 0.999f, 1e-8f, 0, 0};
    nfv_status s = nfv_adam_step(ctx, &adam, 1, &p, &g_bad, &m, &v);
    CHECK(s == NFV_ERR_INVALID_ARG, "Adam gradient size mismatch rejected, got %s", nfv_status_name(s));
    CHECK(strstr(nfv_error_message(), "7x9x10") != NULL, "message names the shape: %s", nfv_error_message());
    s = nfv_adam_step(ctx, &adam, 1, &p, &p, &g_bad, &v);
    CHECK(s == NFV_ERR_INVALID_ARG, "Adam m size mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_adam_step(ctx, &adam, 0, &p, &p, &m, &v);
    CHECK(s == NFV_ERR_INVALID_ARG, "Adam step 0 rejected, got %s", nfv_status_name(s));
    adam.beta2 = 1.0f;
    s = nfv_adam_step(ctx, &adam, 1, &p, &p, &m, &v);
    CHECK(s == NFV_ERR_INVALID_ARG, "Adam beta2 = 1 rejected, got %s", nfv_status_name(s));
    nfv_sgd_params sgd = {0.1f, 0.9f, 0};
    s = nfv_sgd_step(ctx, &sgd, &p, &p, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "SGD with momentum and no velocity rejected, got %s", nfv_status_name(s));
    s = nfv_sgd_step(ctx, &sgd, &p, &g_bad, &m);
    CHECK(s == NFV_ERR_INVALID_ARG, "SGD gradient size mismatch rejected, got %s", nfv_status_name(s));
    sgd.lr = -1.0f;
    s = nfv_sgd_step(ctx, &sgd, &p, &p, &m);
    CHECK(s == NFV_ERR_INVALID_ARG, "SGD negative lr rejected, got %s", nfv_status_name(s));
    nfv_tensor_free(&p), nfv_tensor_free(&g_bad), nfv_tensor_free(&m), nfv_tensor_free(&v);
}
