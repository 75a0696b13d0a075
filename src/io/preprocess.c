/* Bringing a volume to a model grid: reorientation to RAS, trilinear
 * resampling, centre crop/pad, intensity normalization; see
 * include/neurofv/volume.h.
 *
 * Every geometric step updates the affine so that each output voxel centre
 * keeps the world coordinate (mm) it was sampled from: a preprocessed volume
 * written back to NIfTI overlays exactly on its input.  Voxel (i, j, k) of a
 * volume is data[(k * ny + j) * nx + i]. */
#include "base/affine.h"
#include "neurofv/volume.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/status.h"

typedef double mat4[4][4];

static double column_norm(const mat4 a, int c)
{
    return sqrt(a[0][c] * a[0][c] + a[1][c] * a[1][c] + a[2][c] * a[2][c]);
}

static nfv_status check_volume(const nfv_volume *v, const char *op)
{
    if (!v || !v->data || nfv_volume_numel(v) == 0) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: empty input volume", op);
    return NFV_OK;
}

static void copy_codes(const nfv_volume *in, nfv_volume *out)
{
    out->sform_code = in->sform_code;
    out->qform_code = in->qform_code;
}

/* ---- reorientation --------------------------------------------------------- */

nfv_status nfv_volume_reorient_ras(const nfv_volume *in, nfv_volume *out)
{
    NFV_TRY(check_volume(in, "reorient to RAS"));
    /* Assign each voxel axis to the world axis it points along most, greedily
     * from the strongest (normalized) component, as nibabel's io_orientation. */
    const int n_in[3] = {in->nx, in->ny, in->nz};
    double weight[3][3]; /* [world][voxel axis] */
    for (int c = 0; c < 3; c++) {
        double norm = column_norm(in->affine, c);
        if (!(norm > 0.0) || !isfinite(norm))
            return nfv_fail(NFV_ERR_INVALID_ARG, "reorient to RAS: voxel axis %d of the affine is degenerate", c);
        for (int w = 0; w < 3; w++) weight[w][c] = fabs(in->affine[w][c]) / norm;
    }
    int axis_of_world[3] = {-1, -1, -1}, sign_of_world[3] = {1, 1, 1};
    int used_world[3] = {0}, used_axis[3] = {0};
    for (int round = 0; round < 3; round++) {
        int bw = -1, bc = -1;
        double best = -1.0;
        for (int w = 0; w < 3; w++)
            for (int c = 0; c < 3; c++)
                if (!used_world[w] && !used_axis[c] && weight[w][c] > best) {
                    best = weight[w][c];
                    bw = w;
                    bc = c;
                }
        used_world[bw] = used_axis[bc] = 1;
        axis_of_world[bw] = bc;
        sign_of_world[bw] = in->affine[bw][bc] < 0.0 ? -1 : 1;
    }
    /* Output voxel axis w runs along input axis axis_of_world[w] (reversed
     * when the sign is negative).  T maps output voxel -> input voxel. */
    mat4 t = {{0}};
    t[3][3] = 1.0;
    int n_out[3];
    for (int w = 0; w < 3; w++) {
        int c = axis_of_world[w];
        n_out[w] = n_in[c];
        t[c][w] = sign_of_world[w];
        t[c][3] = sign_of_world[w] < 0 ? n_in[c] - 1 : 0;
    }
    mat4 a_out;
    nfv_affine_mul(in->affine, t, a_out);
    NFV_TRY(nfv_volume_alloc(out, n_out[0], n_out[1], n_out[2], (const double(*)[4])a_out));
    copy_codes(in, out);

    const ptrdiff_t stride_in[3] = {1, in->nx, (ptrdiff_t)in->nx * in->ny};
    ptrdiff_t step[3], base = 0;
    for (int w = 0; w < 3; w++) {
        int c = axis_of_world[w];
        step[w] = sign_of_world[w] * stride_in[c];
        if (sign_of_world[w] < 0) base += (ptrdiff_t)(n_in[c] - 1) * stride_in[c];
    }
    float *dst = out->data;
    for (int k = 0; k < n_out[2]; k++)
        for (int j = 0; j < n_out[1]; j++) {
            const float *src = in->data + base + k * step[2] + j * step[1];
            for (int i = 0; i < n_out[0]; i++) *dst++ = src[i * step[0]];
        }
    return NFV_OK;
}

/* ---- resampling ------------------------------------------------------------ */

/* Trilinear sample at continuous voxel coordinate (x, y, z).  A point is
 * inside when it lies within the input's voxels, i.e. within half a voxel of
 * the outermost voxel centres; there the edge value is extended.  Outside:
 * `fill`. */
static float sample_trilinear(const nfv_volume *v, double x, double y, double z, float fill)
{
    const int n[3] = {v->nx, v->ny, v->nz};
    double p[3] = {x, y, z};
    int i0[3], i1[3];
    double f[3];
    for (int a = 0; a < 3; a++) {
        if (!(p[a] >= -0.5 && p[a] <= n[a] - 0.5)) return fill;
        double q = p[a] < 0.0 ? 0.0 : (p[a] > n[a] - 1 ? n[a] - 1 : p[a]);
        int lo = (int)floor(q);
        if (lo > n[a] - 2) lo = n[a] - 2 < 0 ? 0 : n[a] - 2;
        i0[a] = lo;
        i1[a] = lo + 1 < n[a] ? lo + 1 : lo;
        f[a] = q - lo;
    }
    const size_t sy = (size_t)v->nx, sz = (size_t)v->nx * v->ny;
    const float *d = v->data;
#define AT(ii, jj, kk) ((double)d[(size_t)(kk) * sz + (size_t)(jj) * sy + (size_t)(ii)])
    double c00 = AT(i0[0], i0[1], i0[2]) * (1 - f[0]) + AT(i1[0], i0[1], i0[2]) * f[0];
    double c10 = AT(i0[0], i1[1], i0[2]) * (1 - f[0]) + AT(i1[0], i1[1], i0[2]) * f[0];
    double c01 = AT(i0[0], i0[1], i1[2]) * (1 - f[0]) + AT(i1[0], i0[1], i1[2]) * f[0];
    double c11 = AT(i0[0], i1[1], i1[2]) * (1 - f[0]) + AT(i1[0], i1[1], i1[2]) * f[0];
#undef AT
    double c0 = c00 * (1 - f[1]) + c10 * f[1];
    double c1 = c01 * (1 - f[1]) + c11 * f[1];
    return (float)(c0 * (1 - f[2]) + c1 * f[2]);
}

nfv_status nfv_volume_resample_to(const nfv_volume *in, int nx, int ny, int nz, const double affine[4][4], float fill,
                                  nfv_volume *out)
{
    NFV_TRY(check_volume(in, "resample"));
    if (!affine) return nfv_fail(NFV_ERR_INVALID_ARG, "resample: NULL target affine");
    mat4 in_inv, m;
    if (!nfv_affine_inverse(in->affine, in_inv))
        return nfv_fail(NFV_ERR_INVALID_ARG, "resample: the input affine is singular");
    /* m maps target voxel -> input voxel. */
    nfv_affine_mul(in_inv, affine, m);
    NFV_TRY(nfv_volume_alloc(out, nx, ny, nz, affine));
    copy_codes(in, out);
    int identity = nx == in->nx && ny == in->ny && nz == in->nz;
    for (int r = 0; r < 3 && identity; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(m[r][c] - (r == c ? 1.0 : 0.0)) > 1e-9) identity = 0;
    if (identity) { /* same grid: exact copy */
        memcpy(out->data, in->data, nfv_volume_numel(in) * sizeof(float));
        return NFV_OK;
    }
    float *dst = out->data;
    for (int k = 0; k < nz; k++)
        for (int j = 0; j < ny; j++) {
            double bx = m[0][1] * j + m[0][2] * k + m[0][3];
            double by = m[1][1] * j + m[1][2] * k + m[1][3];
            double bz = m[2][1] * j + m[2][2] * k + m[2][3];
            for (int i = 0; i < nx; i++)
                *dst++ = sample_trilinear(in, bx + m[0][0] * i, by + m[1][0] * i, bz + m[2][0] * i, fill);
        }
    return NFV_OK;
}

nfv_status nfv_volume_resample(const nfv_volume *in, const double voxel_mm[3], nfv_volume *out)
{
    NFV_TRY(check_volume(in, "resample"));
    if (!voxel_mm) return nfv_fail(NFV_ERR_INVALID_ARG, "resample: NULL voxel size");
    const int n_in[3] = {in->nx, in->ny, in->nz};
    int n_out[3];
    /* s maps output voxel -> input voxel: scale by the size ratio about the
     * grid centre, so the output covers the same field of view centred on the
     * same point (181 voxels at 1 mm -> 91 at 2 mm, voxel 0 on voxel 0). */
    mat4 s = {{0}};
    s[3][3] = 1.0;
    for (int c = 0; c < 3; c++) {
        double v_in = column_norm(in->affine, c);
        if (!(voxel_mm[c] > 0.0) || !isfinite(voxel_mm[c]))
            return nfv_fail(NFV_ERR_INVALID_ARG, "resample: voxel size %g mm on axis %d (must be > 0)", voxel_mm[c], c);
        if (!(v_in > 0.0)) return nfv_fail(NFV_ERR_INVALID_ARG, "resample: input voxel axis %d is degenerate", c);
        double ratio = voxel_mm[c] / v_in;
        if (fabs(ratio - 1.0) < 1e-6) ratio = 1.0; /* same size: keep the grid exactly */
        double fov = n_in[c] / ratio;
        if (fov > 1e8) return nfv_fail(NFV_ERR_INVALID_ARG, "resample: %g mm voxels give too many voxels", voxel_mm[c]);
        n_out[c] = (int)floor(fov + 0.5);
        if (n_out[c] < 1) n_out[c] = 1;
        s[c][c] = ratio;
        s[c][3] = 0.5 * (n_in[c] - 1) - 0.5 * (n_out[c] - 1) * ratio;
    }
    mat4 a_out;
    nfv_affine_mul(in->affine, s, a_out);
    return nfv_volume_resample_to(in, n_out[0], n_out[1], n_out[2], (const double(*)[4])a_out, 0.0f, out);
}

/* ---- crop / pad ------------------------------------------------------------ */

nfv_status nfv_volume_crop_pad(const nfv_volume *in, int nx, int ny, int nz, nfv_volume *out)
{
    NFV_TRY(check_volume(in, "crop/pad"));
    const int n_in[3] = {in->nx, in->ny, in->nz}, n_out[3] = {nx, ny, nz};
    /* Output voxel o is input voxel o + start; truncating division makes crop
     * and pad exact inverses (pad 7->10 puts 1 before and 2 after; crop 10->7
     * removes 1 before and 2 after). */
    int start[3];
    mat4 t = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    for (int c = 0; c < 3; c++) {
        start[c] = (n_in[c] - n_out[c]) / 2;
        t[c][3] = start[c];
    }
    mat4 a_out;
    nfv_affine_mul(in->affine, t, a_out);
    NFV_TRY(nfv_volume_alloc(out, nx, ny, nz, (const double(*)[4])a_out));
    copy_codes(in, out);
    /* Range of output i whose source lies inside the input. */
    int i_lo = start[0] < 0 ? -start[0] : 0;
    int i_hi = n_in[0] - start[0] < nx ? n_in[0] - start[0] : nx;
    for (int k = 0; k < nz; k++) {
        int kk = k + start[2];
        if (kk < 0 || kk >= n_in[2]) continue;
        for (int j = 0; j < ny; j++) {
            int jj = j + start[1];
            if (jj < 0 || jj >= n_in[1] || i_hi <= i_lo) continue;
            const float *src = in->data + ((size_t)kk * n_in[1] + jj) * n_in[0] + (i_lo + start[0]);
            memcpy(out->data + ((size_t)k * ny + j) * nx + i_lo, src, (size_t)(i_hi - i_lo) * sizeof(float));
        }
    }
    return NFV_OK;
}

/* ---- normalization --------------------------------------------------------- */

const char *nfv_norm_method_name(nfv_norm_method m)
{
    switch (m) {
    case NFV_NORM_NONE: return "none";
    case NFV_NORM_ZSCORE_NONZERO: return "zscore-nonzero";
    case NFV_NORM_ZSCORE_MASK: return "zscore-mask";
    case NFV_NORM_MINMAX: return "minmax";
    }
    return "unknown";
}

nfv_status nfv_norm_method_parse(const char *s, nfv_norm_method *out)
{
    if (!s || !out) return nfv_fail(NFV_ERR_INVALID_ARG, "normalization: NULL argument");
    if (!strcmp(s, "none")) *out = NFV_NORM_NONE;
    else if (!strcmp(s, "zscore-nonzero") || !strcmp(s, "zscore")) *out = NFV_NORM_ZSCORE_NONZERO;
    else if (!strcmp(s, "zscore-mask")) *out = NFV_NORM_ZSCORE_MASK;
    else if (!strcmp(s, "minmax")) *out = NFV_NORM_MINMAX;
    else
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "unknown normalization '%s' (expected none, zscore-nonzero, zscore-mask or minmax)", s);
    return NFV_OK;
}

nfv_status nfv_volume_normalize(nfv_volume *v, nfv_norm_method method, const nfv_volume *mask)
{
    NFV_TRY(check_volume(v, "normalize"));
    size_t n = nfv_volume_numel(v);
    float *d = v->data;
    if (method == NFV_NORM_NONE) return NFV_OK;
    if (method == NFV_NORM_MINMAX) {
        float lo = FLT_MAX, hi = -FLT_MAX;
        for (size_t i = 0; i < n; i++) {
            lo = d[i] < lo ? d[i] : lo;
            hi = d[i] > hi ? d[i] : hi;
        }
        double range = (double)hi - lo;
        for (size_t i = 0; i < n; i++) d[i] = range > 0.0 ? (float)((d[i] - (double)lo) / range) : 0.0f;
        return NFV_OK;
    }
    if (method != NFV_NORM_ZSCORE_NONZERO && method != NFV_NORM_ZSCORE_MASK)
        return nfv_fail(NFV_ERR_INVALID_ARG, "normalize: unknown method %d", (int)method);
    if (method == NFV_NORM_ZSCORE_MASK) {
        if (!mask || !mask->data) return nfv_fail(NFV_ERR_INVALID_ARG, "normalize zscore-mask: no mask given");
        if (mask->nx != v->nx || mask->ny != v->ny || mask->nz != v->nz)
            return nfv_fail(NFV_ERR_INVALID_ARG, "normalize zscore-mask: mask is %dx%dx%d, volume %dx%dx%d", mask->nx,
                            mask->ny, mask->nz, v->nx, v->ny, v->nz);
    }
#define INSIDE(i) (method == NFV_NORM_ZSCORE_MASK ? mask->data[i] > 0.5f : d[i] != 0.0f)
    /* Two passes in double: mean, then population standard deviation. */
    double sum = 0.0;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (INSIDE(i)) {
            sum += d[i];
            count++;
        }
    if (count == 0)
        return nfv_fail(NFV_ERR_INVALID_ARG, "normalize %s: no voxel inside the %s", nfv_norm_method_name(method),
                        method == NFV_NORM_ZSCORE_MASK ? "mask" : "brain (all voxels are 0)");
    double mean = sum / (double)count, var = 0.0;
    for (size_t i = 0; i < n; i++)
        if (INSIDE(i)) var += (d[i] - mean) * (d[i] - mean);
    double sd = sqrt(var / (double)count);
    double inv = sd > 0.0 ? 1.0 / sd : 0.0; /* constant inside: all 0 */
    for (size_t i = 0; i < n; i++) d[i] = INSIDE(i) ? (float)((d[i] - mean) * inv) : 0.0f;
#undef INSIDE
    return NFV_OK;
}

/* ---- the whole pipeline ------------------------------------------------------ */

nfv_status nfv_preprocess(const nfv_volume *in, const nfv_grid *grid, nfv_volume *out)
{
    NFV_TRY(check_volume(in, "preprocess"));
    if (!grid || grid->nx < 1 || grid->ny < 1 || grid->nz < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "preprocess: invalid grid");
    if (grid->norm == NFV_NORM_ZSCORE_MASK)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "preprocess: zscore-mask needs a mask; call nfv_volume_normalize with one (or use zscore-nonzero)");
    nfv_volume ras, res;
    NFV_TRY(nfv_volume_reorient_ras(in, &ras));
    nfv_status s = nfv_volume_resample(&ras, grid->voxel_mm, &res);
    nfv_volume_free(&ras);
    if (s != NFV_OK) return s;
    s = nfv_volume_crop_pad(&res, grid->nx, grid->ny, grid->nz, out);
    nfv_volume_free(&res);
    if (s != NFV_OK) return s;
    s = nfv_volume_normalize(out, grid->norm, NULL);
    if (s != NFV_OK) nfv_volume_free(out);
    return s;
}
