/* What each epoch of nfv_train_run draws and uses: the order of the train
 * rows, the augmentation of each sample, the learning rate.  All of it comes
 * from hashes of (seed, epoch, position in the epoch), not from a running
 * generator, so a resumed run draws exactly what the uninterrupted run would
 * have drawn.  See include/neurofv/train.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/rng.h"
#include "neurofv/train.h"

const char *nfv_lr_schedule_name(nfv_lr_schedule s)
{
    return s == NFV_LR_COSINE ? "cosine" : "constant";
}

nfv_status nfv_lr_schedule_parse(const char *s, nfv_lr_schedule *out)
{
    if (s && !strcmp(s, "constant")) *out = NFV_LR_CONSTANT;
    else if (s && !strcmp(s, "cosine")) *out = NFV_LR_COSINE;
    else return nfv_fail(NFV_ERR_INVALID_ARG, "learning-rate schedule \"%s\" is not constant or cosine", s ? s : "");
    return NFV_OK;
}

/* SGDR without restarts: torch's CosineAnnealingLR with eta_min = base/100,
 * stepped per epoch. */
float nfv_train_lr(nfv_lr_schedule s, float base, int epoch, int epochs)
{
    if (s != NFV_LR_COSINE || epochs < 2) return base;
    double floor_lr = base / 100.0, t = (double)epoch / (double)(epochs - 1);
    return (float)(floor_lr + 0.5 * (base - floor_lr) * (1.0 + cos(3.14159265358979323846 * t)));
}

void nfv_train_shuffle(int *idx, int n, unsigned long long seed, int epoch)
{
    unsigned long long s = nfv_mix64(seed ^ nfv_mix64(0x5EEDULL + (unsigned long long)epoch));
    for (int i = n - 1; i > 0; i--) {
        s = nfv_mix64(s);
        int j = (int)(s % (unsigned long long)(i + 1));
        int t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
}

nfv_status nfv_augment_parse(const char *s, nfv_augment *out)
{
    out->shift = 0, out->flip = 0;
    if (!s) return NFV_OK;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char end;
        if (!strcmp(tok, "flip")) out->flip = 1;
        else if (sscanf(tok, "shift=%d%c", &out->shift, &end) != 1 || out->shift < 0)
            return nfv_fail(NFV_ERR_INVALID_ARG, "augmentation \"%s\" is not a comma-separated list of shift=N and flip",
                            s);
    }
    return NFV_OK;
}

/* dst (D, H, W) = src shifted by (dz, dy, dx) voxels, zeros shifted in. */
static void shifted_copy(float *dst, const float *src, int D, int H, int W, int dz, int dy, int dx)
{
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++) {
            float *o = dst + ((size_t)z * H + y) * W;
            int sz = z - dz, sy = y - dy;
            if (sz < 0 || sz >= D || sy < 0 || sy >= H) {
                memset(o, 0, (size_t)W * sizeof *o);
                continue;
            }
            const float *in = src + ((size_t)sz * H + sy) * W;
            for (int x = 0; x < W; x++) {
                int sx = x - dx;
                o[x] = sx >= 0 && sx < W ? in[sx] : 0.0f;
            }
        }
}

/* v (D, H, W) mirrored along x in place. */
static void flip_x_inplace(float *v, int D, int H, int W)
{
    for (size_t r = 0; r < (size_t)D * H; r++) {
        float *row = v + r * W;
        for (int x = 0; x < W / 2; x++) {
            float t = row[x];
            row[x] = row[W - 1 - x], row[W - 1 - x] = t;
        }
    }
}

void nfv_train_augment(const nfv_augment *a, unsigned long long seed, int epoch, int sample, const float *src,
                       float *dst, int D, int H, int W)
{
    int d[3] = {0, 0, 0};
    if (a && a->shift > 0) {
        unsigned long long h = nfv_mix64(seed ^ nfv_mix64(((unsigned long long)epoch << 32) ^ (unsigned)sample));
        for (int i = 0; i < 3; i++) {
            h = nfv_mix64(h);
            d[i] = (int)(h % (unsigned long long)(2 * a->shift + 1)) - a->shift;
        }
    }
    shifted_copy(dst, src, D, H, W, d[0], d[1], d[2]);
    if (a && a->flip &&
        (nfv_mix64(seed ^ nfv_mix64(((unsigned long long)epoch << 32) ^ 0xF11Full ^ ((unsigned long long)sample << 8))) & 1))
        flip_x_inplace(dst, D, H, W);
}
