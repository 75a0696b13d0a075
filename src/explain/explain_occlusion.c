/* Occlusion: how much the objective drops when a box of the input is set to
 * the baseline, averaged over the boxes covering each voxel.  One forward
 * per box, B boxes per device call; the occluded copies are made on the
 * host (a copy and a box fill, cheap beside the forward). */
#include <stdlib.h>
#include <string.h>

#include "explain/explain_internal.h"

/* Box starts along an axis of n voxels: 0, stride, 2 stride, ... and a last
 * box flush with the end, so every voxel is covered when box >= stride.
 * Returns the count; starts has room for n + 1. */
static int box_starts(int n, int box, int stride, int *starts)
{
    int c = 0;
    if (box >= n) {
        starts[c++] = 0;
        return c;
    }
    for (int p = 0;; p += stride) {
        if (p + box > n) p = n - box;
        if (c && starts[c - 1] == p) break;
        starts[c++] = p;
        if (p + box >= n) break;
    }
    return c;
}

typedef struct occ_box {
    int z, y, x;
} occ_box;

nfv_status explain_occlusion(explain_batch *b, const nfv_target *t, const float *x, const float *baseline,
                             const nfv_explain_options *o, float *map, float *objective)
{
    const int D = b->m->input_shape[1], H = b->m->input_shape[2], W = b->m->input_shape[3];
    const int box = o->occlusion_box;
    int *sz = malloc(((size_t)D + H + W + 3) * sizeof(int));
    double *sum = calloc(b->per, sizeof *sum);
    int *count = calloc(b->per, sizeof *count);
    if (!sz || !sum || !count) {
        free(sz), free(sum), free(count);
        return nfv_fail(NFV_ERR_NO_MEMORY, "occlusion: out of memory");
    }
    int *sy = sz + D + 1, *sx = sy + H + 1;
    int nz = box_starts(D, box, o->occlusion_stride, sz), ny = box_starts(H, box, o->occlusion_stride, sy),
        nx = box_starts(W, box, o->occlusion_stride, sx);
    /* The unoccluded objective first, row 0 of its own call. */
    memcpy(b->host_x, x, b->per * sizeof *x);
    b->tg[0] = *t;
    nfv_status s = explain_batch_run(b, 1, 0);
    float f0 = b->objective[0];
    if (objective) *objective = f0;
    long total = (long)nz * ny * nx;
    occ_box *cur = malloc((size_t)b->B * sizeof *cur);
    if (!cur && !s) s = nfv_fail(NFV_ERR_NO_MEMORY, "occlusion: out of memory");
    for (long i0 = 0; i0 < total && !s; i0 += b->B) {
        int k = total - i0 < b->B ? (int)(total - i0) : b->B;
        for (int c = 0; c < k; c++) {
            long i = i0 + c;
            occ_box bx = {sz[i / ((long)ny * nx)], sy[(i / nx) % ny], sx[i % nx]};
            cur[c] = bx;
            float *row = b->host_x + (size_t)c * b->per;
            memcpy(row, x, b->per * sizeof *x);
            for (int z = bx.z; z < bx.z + box && z < D; z++)
                for (int y = bx.y; y < bx.y + box && y < H; y++) {
                    size_t r = ((size_t)z * H + y) * W;
                    for (int xx = bx.x; xx < bx.x + box && xx < W; xx++) row[r + xx] = baseline ? baseline[r + xx] : 0.0f;
                }
            b->tg[c] = *t;
        }
        s = explain_batch_run(b, k, 0);
        for (int c = 0; c < k && !s; c++) {
            double drop = (double)f0 - b->objective[c];
            for (int z = cur[c].z; z < cur[c].z + box && z < D; z++)
                for (int y = cur[c].y; y < cur[c].y + box && y < H; y++) {
                    size_t r = ((size_t)z * H + y) * W;
                    for (int xx = cur[c].x; xx < cur[c].x + box && xx < W; xx++) sum[r + xx] += drop, count[r + xx]++;
                }
        }
    }
    for (size_t v = 0; v < b->per && !s; v++) map[v] = count[v] ? (float)(sum[v] / count[v]) : 0.0f;
    free(cur), free(sz), free(sum), free(count);
    return s;
}
