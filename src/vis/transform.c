/* Transformation-robustness transforms for feature visualization: padding,
 * integer jitter, affine warp (scale + rotation) and their exact adjoints;
 * kernels in cl/transform.cl.  See include/neurofv/vis_ops.h.
 *
 * Adjoint of the trilinear warp: a scatter in the forward's terms (each
 * output voxel adds to 8 input voxels).  OpenCL 1.2 has no float atomics, and
 * atomic_cmpxchg loops are slow on CPUs and nondeterministic in the summation
 * order.  We gather instead: each input voxel visits the output voxels whose
 * sample point falls within one voxel of it (found through the inverse map),
 * recomputing the forward's sample point and weight bit for bit.
 *
 * Both warp kernels compute VEC (the device's vector width) consecutive x
 * voxels per work-item as float vectors: the sample points are affine in x,
 * so only the corner loads are gathers.  The adjoint visits the (pz, py) rows
 * of the box of outputs an input voxel can reach and, per row, only the few
 * px (Kx, 3 for scale <= 1.25) around the interval where |q - v| < 1 holds on
 * every axis; the per-axis reciprocals and Kx come from the host.
 * Measured at 1x1x91x109x91, scale 0.8-1.25, +-15 degrees (2-core PoCL CPU,
 * AVX-512, process CPU time of both cores, which was stable on the loaded
 * machine; wall time is about half on an idle one): forward 33 -> 4.5 ms,
 * adjoint 180 -> 31 ms.  In the adjoint the gathers are only ~10 % of the
 * time: it is the ~16 rows x 3 candidates per voxel (of which ~8-16 count)
 * that cost; setting Kx to 1 halved it.  Skipping rows empty for every lane
 * gained nothing (the lanes' boxes are offset differently).  Tighter rows
 * (the py range of each pz section of the parallelepiped) are the next step. */
#include "base/rng.h"
#include "neurofv/vis_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nfv_status volume_dims(const char *op, const char *what, const nfv_tensor *t, int *n, int dims[3])
{
    char s[64];
    if (!t || !t->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s is missing", op, what);
    if (t->ndim == 5 && t->shape[1] == 1) *n = t->shape[0];
    else if ((t->ndim == 4 && t->shape[0] == 1) || t->ndim == 3) *n = 1;
    else
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected (N, 1, D, H, W)", op, what,
                        nfv_shape_str(t, s, sizeof s));
    for (int i = 0; i < 3; i++) dims[i] = t->shape[t->ndim - 3 + i];
    return NFV_OK;
}

/* Every transform kernel comes from one program built with the vector width. */
static nfv_status transform_kernel(nfv_context *ctx, const char *name, cl_kernel *k)
{
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", nfv_context_vector_width(ctx));
    return nfv_kernel_get(ctx, "transform", opts, name, k);
}

/* Launch a FLAT_BLOCK kernel (cl/transform.cl) over N*D*H rows of W voxels,
 * VEC per work-item, with one fixed local size (PoCL compiles a work-group
 * function per local size, and its own choice for the 3D range was slow). */
static nfv_status launch_blocks(nfv_context *ctx, cl_kernel k, int W, int H, int ND)
{
    int vec = nfv_context_vector_width(ctx);
    size_t local = 64, maxwg = nfv_context_max_local(ctx);
    if (local > maxwg) local = maxwg;
    size_t items = (size_t)((W + vec - 1) / vec) * H * ND;
    size_t global = (items + local - 1) / local * local;
    return nfv_kernel_launch(ctx, k, 1, &global, &local);
}

static nfv_status launch3(nfv_context *ctx, cl_kernel k, int W, int H, int ND)
{
    size_t global[3] = {(size_t)W, (size_t)H, (size_t)ND};
    return nfv_kernel_launch(ctx, k, 3, global, NULL);
}

/* ---- padding ------------------------------------------------------------ */

static nfv_status pad_check(const char *op, const int pad[3], nfv_boundary mode, const nfv_tensor *small,
                            const nfv_tensor *big, int *n, int dims[3])
{
    int nb, bd[3];
    NFV_TRY(volume_dims(op, "unpadded volume", small, n, dims));
    NFV_TRY(volume_dims(op, "padded volume", big, &nb, bd));
    if (mode != NFV_BOUNDARY_ZERO && mode != NFV_BOUNDARY_REPLICATE)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: unknown mode %d", op, (int)mode);
    for (int a = 0; a < 3; a++)
        if (pad[a] < 0 || bd[a] != dims[a] + 2 * pad[a] || nb != *n)
            return nfv_fail(NFV_ERR_INVALID_ARG,
                            "%s: padded volume is %dx%dx%dx%d, expected %dx%dx%dx%d for pad %d,%d,%d", op, nb,
                            bd[0], bd[1], bd[2], *n, dims[0] + 2 * pad[0], dims[1] + 2 * pad[1],
                            dims[2] + 2 * pad[2], pad[0], pad[1], pad[2]);
    return NFV_OK;
}

nfv_status nfv_pad(nfv_context *ctx, const int pad[3], nfv_boundary mode, float value, const nfv_tensor *x,
                   nfv_tensor *y)
{
    int n, d[3];
    NFV_TRY(pad_check("pad", pad, mode, x, y, &n, d));
    cl_kernel k;
    NFV_TRY(transform_kernel(ctx, "pad_forward", &k));
    int rep = mode == NFV_BOUNDARY_REPLICATE;
    NFV_ARG(k, "pad_forward", 0, x->buf);
    NFV_ARG(k, "pad_forward", 1, y->buf);
    for (int a = 0; a < 3; a++) {
        NFV_ARG(k, "pad_forward", 2 + a, d[a]);
        NFV_ARG(k, "pad_forward", 5 + a, pad[a]);
    }
    NFV_ARG(k, "pad_forward", 8, rep);
    NFV_ARG(k, "pad_forward", 9, value);
    return launch3(ctx, k, d[2] + 2 * pad[2], d[1] + 2 * pad[1], n * (d[0] + 2 * pad[0]));
}

nfv_status nfv_pad_adjoint(nfv_context *ctx, const int pad[3], nfv_boundary mode, const nfv_tensor *dy,
                           nfv_tensor *dx)
{
    int n, d[3];
    NFV_TRY(pad_check("pad adjoint", pad, mode, dx, dy, &n, d));
    cl_kernel k;
    NFV_TRY(transform_kernel(ctx, "pad_adjoint", &k));
    int rep = mode == NFV_BOUNDARY_REPLICATE;
    NFV_ARG(k, "pad_adjoint", 0, dy->buf);
    NFV_ARG(k, "pad_adjoint", 1, dx->buf);
    for (int a = 0; a < 3; a++) {
        NFV_ARG(k, "pad_adjoint", 2 + a, d[a]);
        NFV_ARG(k, "pad_adjoint", 5 + a, pad[a]);
    }
    NFV_ARG(k, "pad_adjoint", 8, rep);
    return launch3(ctx, k, d[2], d[1], n * d[0]);
}

/* ---- jitter ------------------------------------------------------------- */

static nfv_status same_shape(const char *op, const nfv_tensor *x, const nfv_tensor *y, int *n, int d[3])
{
    int ny, dy[3];
    NFV_TRY(volume_dims(op, "x", x, n, d));
    NFV_TRY(volume_dims(op, "y", y, &ny, dy));
    if (ny != *n || dy[0] != d[0] || dy[1] != d[1] || dy[2] != d[2])
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: x is %dx%dx%dx%d but y is %dx%dx%dx%d", op, *n, d[0], d[1], d[2],
                        ny, dy[0], dy[1], dy[2]);
    if (x->buf == y->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: y must not be x", op);
    return NFV_OK;
}

nfv_status nfv_jitter(nfv_context *ctx, const int *shift, int adjoint, const nfv_tensor *x, nfv_tensor *y)
{
    int n, d[3];
    NFV_TRY(same_shape("jitter", x, y, &n, d));
    if (!shift) return nfv_fail(NFV_ERR_INVALID_ARG, "jitter: no shifts given");
    cl_kernel k;
    NFV_TRY(transform_kernel(ctx, "jitter", &k));
    cl_int err;
    cl_mem sbuf = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 (size_t)n * 3 * sizeof(cl_int), (void *)shift, &err);
    if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", "jitter shifts", __FILE__, __LINE__);
    int sign = adjoint ? -1 : 1;
    nfv_status st = NFV_OK;
    cl_int e = clSetKernelArg(k, 0, sizeof(cl_mem), &x->buf);
    e |= clSetKernelArg(k, 1, sizeof(cl_mem), &y->buf);
    e |= clSetKernelArg(k, 2, sizeof(cl_mem), &sbuf);
    for (int a = 0; a < 3; a++) e |= clSetKernelArg(k, 3 + a, sizeof(int), &d[a]);
    e |= clSetKernelArg(k, 6, sizeof(int), &sign);
    e |= clSetKernelArg(k, 7, sizeof(int), &n);
    if (e != CL_SUCCESS) st = nfv_fail(NFV_ERR_OPENCL, "clSetKernelArg(jitter) failed");
    else st = launch_blocks(ctx, k, d[2], d[1], n * d[0]);
    clReleaseMemObject(sbuf); /* freed once the queued kernel is done with it */
    return st;
}

/* ---- affine warp -------------------------------------------------------- */

/* Inverse of the 3x4 affine m (q = A p + b  ->  p = A^-1 q - A^-1 b), in double. */
static int affine_invert(const float *m, float *inv)
{
    double a[3][3], r[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) a[i][j] = m[4 * i + j];
    r[0][0] = a[1][1] * a[2][2] - a[1][2] * a[2][1];
    r[0][1] = a[0][2] * a[2][1] - a[0][1] * a[2][2];
    r[0][2] = a[0][1] * a[1][2] - a[0][2] * a[1][1];
    r[1][0] = a[1][2] * a[2][0] - a[1][0] * a[2][2];
    r[1][1] = a[0][0] * a[2][2] - a[0][2] * a[2][0];
    r[1][2] = a[0][2] * a[1][0] - a[0][0] * a[1][2];
    r[2][0] = a[1][0] * a[2][1] - a[1][1] * a[2][0];
    r[2][1] = a[0][1] * a[2][0] - a[0][0] * a[2][1];
    r[2][2] = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    double det = a[0][0] * r[0][0] + a[0][1] * r[1][0] + a[0][2] * r[2][0];
    double scale = fabs(a[0][0]) + fabs(a[1][1]) + fabs(a[2][2]) + 1e-30;
    if (!(fabs(det) > 1e-9 * scale * scale * scale)) return 0;
    for (int i = 0; i < 3; i++) {
        double t = 0.0;
        for (int j = 0; j < 3; j++) {
            inv[4 * i + j] = (float)(r[i][j] / det);
            t += r[i][j] / det * m[4 * j + 3];
        }
        inv[4 * i + 3] = (float)-t;
    }
    return 1;
}

/* Per-sample parameters of the warp kernels (layout in cl/transform.cl):
 * the matrix, its inverse, the half-widths of the box of outputs an input
 * voxel reaches, 1 / A[a][2] and the candidate count per output row. */
#define WARP_STRIDE 32
static int warp_params(const float *m, float *p)
{
    memcpy(p, m, 12 * sizeof *p);
    if (!affine_invert(m, p + 12)) return 0;
    const float *inv = p + 12;
    for (int a = 0; a < 2; a++)
        /* A point on the box edge has weight 0; the slack covers rounding. */
        p[24 + a] = fabsf(inv[4 * a]) + fabsf(inv[4 * a + 1]) + fabsf(inv[4 * a + 2]) + 1e-3f;
    p[26] = fabsf(inv[8]) + fabsf(inv[9]) + fabsf(inv[10]) + 1e-3f;
    /* Along one output row q_a moves by A[a][2] per voxel, so |q_a - v_a| < 1
     * holds on an interval of length 2 / |A[a][2]|; the shortest bounds the
     * intersection, which the kernel widens by 1e-3 on each side. */
    double len = 1e30;
    for (int a = 0; a < 3; a++) {
        float c = m[4 * a + 2];
        p[27 + a] = c != 0.0f ? 1.0f / c : 0.0f;
        if (c != 0.0f && 2.0 / fabs((double)c) < len) len = 2.0 / fabs((double)c);
    }
    p[30] = (float)(floor(len + 0.01) + 1.0);
    return 1;
}

/* box: the adjoint's half-open box (z0, z1, y0, y1, x0, x1), or NULL for
 * the forward kernel, which takes none. */
static nfv_status warp_run(nfv_context *ctx, const char *op, const char *kname, const float *matrix,
                           const nfv_tensor *in_vol, const nfv_tensor *out_vol, const nfv_tensor *src,
                           nfv_tensor *dst, int gw, int gh, int gnd, const int *box)
{
    int n, di[3], no, dout[3];
    NFV_TRY(volume_dims(op, "input-space volume", in_vol, &n, di));
    NFV_TRY(volume_dims(op, "output-space volume", out_vol, &no, dout));
    if (n != no) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: batch sizes differ (%d and %d)", op, n, no);
    if (!matrix) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: no matrices given", op);
    if (src->buf == dst->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: output must not alias input", op);
    float *mats = calloc((size_t)n * WARP_STRIDE, sizeof *mats);
    if (!mats) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", op);
    for (int i = 0; i < n; i++) {
        if (!warp_params(matrix + 12 * i, mats + WARP_STRIDE * i)) {
            free(mats);
            return nfv_fail(NFV_ERR_INVALID_ARG, "%s: matrix of sample %d is singular", op, i);
        }
    }
    cl_int err;
    cl_mem mbuf = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 (size_t)n * WARP_STRIDE * sizeof(float), mats, &err);
    free(mats);
    if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", "warp matrices", __FILE__, __LINE__);
    cl_kernel k;
    nfv_status st = transform_kernel(ctx, kname, &k);
    if (st == NFV_OK) {
        cl_int e = clSetKernelArg(k, 0, sizeof(cl_mem), &src->buf);
        e |= clSetKernelArg(k, 1, sizeof(cl_mem), &dst->buf);
        e |= clSetKernelArg(k, 2, sizeof(cl_mem), &mbuf);
        for (int a = 0; a < 3; a++) {
            e |= clSetKernelArg(k, 3 + a, sizeof(int), &di[a]);
            e |= clSetKernelArg(k, 6 + a, sizeof(int), &dout[a]);
        }
        e |= clSetKernelArg(k, 9, sizeof(int), &n);
        for (int a = 0; box && a < 6; a++) e |= clSetKernelArg(k, 10 + a, sizeof(int), &box[a]);
        if (e != CL_SUCCESS) st = nfv_fail(NFV_ERR_OPENCL, "clSetKernelArg(%s) failed", kname);
        else st = launch_blocks(ctx, k, gw, gh, gnd * n);
    }
    clReleaseMemObject(mbuf);
    return st;
}

nfv_status nfv_affine_warp(nfv_context *ctx, const float *matrix, const nfv_tensor *x, nfv_tensor *y)
{
    int n, d[3];
    NFV_TRY(volume_dims("affine warp", "y", y, &n, d));
    return warp_run(ctx, "affine warp", "warp_forward", matrix, x, y, x, y, d[2], d[1], d[0], NULL);
}

nfv_status nfv_affine_warp_adjoint(nfv_context *ctx, const float *matrix, const nfv_tensor *dy, nfv_tensor *dx,
                                   const int box[6])
{
    int n, d[3];
    NFV_TRY(volume_dims("affine warp adjoint", "dx", dx, &n, d));
    int whole[6] = {0, d[0], 0, d[1], 0, d[2]};
    if (box)
        for (int a = 0; a < 3; a++) {
            if (box[2 * a] < 0 || box[2 * a] > box[2 * a + 1] || box[2 * a + 1] > d[a])
                return nfv_fail(NFV_ERR_INVALID_ARG, "affine warp adjoint: box %d..%d along axis %d of %d voxels",
                                box[2 * a], box[2 * a + 1], a, d[a]);
            whole[2 * a] = box[2 * a], whole[2 * a + 1] = box[2 * a + 1];
        }
    return warp_run(ctx, "affine warp adjoint", "warp_adjoint", matrix, dx, dy, dy, dx, d[2], d[1], d[0], whole);
}

void nfv_affine_about_centre(const int in_dims[3], const int out_dims[3], float scale, const float angles[3],
                             const float shift[3], float matrix[12])
{
    /* Content moves by p = c_out + shift + s R (q - c_in), so
     * q = c_in + R^T (p - c_out - shift) / s, with R = Rz Ry Rx acting on (z, y, x). */
    double ca[3], sa[3];
    for (int i = 0; i < 3; i++) {
        ca[i] = cos(angles[i]);
        sa[i] = sin(angles[i]);
    }
    /* Rotation about the z axis turns the (y, x) plane, about y the (z, x) plane, about x the (z, y) plane;
     * each turns the first axis of its plane towards the second (+90 degrees maps e_a to e_b). */
    double rz[3][3] = {{1, 0, 0}, {0, ca[0], -sa[0]}, {0, sa[0], ca[0]}};
    double ry[3][3] = {{ca[1], 0, -sa[1]}, {0, 1, 0}, {sa[1], 0, ca[1]}};
    double rx[3][3] = {{ca[2], -sa[2], 0}, {sa[2], ca[2], 0}, {0, 0, 1}};
    double t[3][3], r[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            t[i][j] = 0;
            for (int k = 0; k < 3; k++) t[i][j] += ry[i][k] * rx[k][j];
        }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            r[i][j] = 0;
            for (int k = 0; k < 3; k++) r[i][j] += rz[i][k] * t[k][j];
        }
    for (int i = 0; i < 3; i++) {
        double off = 0.5 * (in_dims[i] - 1);
        for (int j = 0; j < 3; j++) {
            double a = r[j][i] / scale; /* (R^T)_ij / s */
            /* Snap round-off so quarter turns sample exact voxels: a float
             * angle cannot hold pi/2 (cos((float)(pi/2)) = -4.4e-8). */
            if (fabs(a - nearbyint(a)) < 1e-6) a = nearbyint(a);
            matrix[4 * i + j] = (float)a;
            off -= a * (0.5 * (out_dims[j] - 1) + (shift ? shift[j] : 0.0f));
        }
        matrix[4 * i + 3] = (float)off;
    }
}

void nfv_random_transforms(uint64_t *streams, int n, const int in_dims[3], const int out_dims[3], float scale_min,
                           float scale_max, float max_angle, int jitter, float *matrix, int *shift)
{
    for (int i = 0; i < n; i++) {
        uint64_t *s = &streams[i];
        /* Always draw every number so the sequence does not depend on which outputs were asked for. */
        float sc = (float)(scale_min + (scale_max - scale_min) * nfv_uniform01(s));
        float ang[3], sh[3];
        for (int a = 0; a < 3; a++) ang[a] = (float)((2.0 * nfv_uniform01(s) - 1.0) * max_angle);
        for (int a = 0; a < 3; a++) {
            int v = (int)floor(nfv_uniform01(s) * (2 * jitter + 1)) - jitter;
            if (v > jitter) v = jitter;
            if (shift) shift[3 * i + a] = v;
            sh[a] = (float)v;
        }
        if (matrix) nfv_affine_about_centre(in_dims, out_dims, sc, ang, sh, matrix + 12 * i);
    }
}
