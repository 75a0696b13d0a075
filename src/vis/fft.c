/* Fourier parameterization of feature-visualization images (Lucid's
 * fft_image, in 3D): image = B^T (s * param) with B an orthonormal separable
 * basis and s the 1/f frequency scaling; kernels in cl/fft.cl.
 *
 * Why dense per-axis matrices and not an FFT.  The volumes have any size:
 * the 2 mm MNI grid is 91x109x91 and 109 is prime, so radix-2/3/5/7 FFTs
 * (clFFT) need padding to 112, which changes the basis (and the image size)
 * or needs Bluestein's algorithm.  Applying an n x n matrix along each axis
 * is exact for every n, costs 2 n flops per voxel and axis (0.53 GFLOP for a
 * 91x109x91 decode), and runs as a vectorized, cache-friendly batched
 * matrix product (explicit vectors, 6 rows x 2 vectors per work-item).
 * Measured on the 2-core PoCL CPU device (AVX-512) in a ref4 visualization
 * with --param fourier at batch 1 (2026-12-01, kernel profile over 512
 * steps): the passes along D and H 0.72 ms a launch (about 250 GFLOP/s),
 * along W 0.86 ms (190 GFLOP/s), a whole decode about 2.4 ms; before their
 * loops were unrolled (cl/fft.cl) 3.4 and 3.1 ms (about 50 GFLOP/s).  For
 * scale, torch.fft.irfftn (pocketfft, Bluestein for 109) took 20-31 ms on
 * the same machine earlier: an FFT would not win here, and the dense passes
 * are exact for every size and map well to GPUs (small batched GEMMs).  Not
 * yet measured: a GPU.
 *
 * Why a real basis.  Lucid keeps a complex half spectrum (rfft) as the
 * parameter.  Here the DFT basis is the separable Hartley basis: along each
 * axis of size n, coefficient k is cas(2 pi k i / n) / sqrt(n) (cas = cos +
 * sin), a real orthonormal symmetric matrix.  The product basis function for
 * (kz, ky, kx) is a combination of the 8 plane waves (+-kz, +-ky, +-kx), which
 * all have the same frequency magnitude |f|, so scaling by s(|f|) acts on
 * exactly the same subspaces as Lucid's complex scaling: with iid parameters
 * both give the same image distribution (power spectrum s^2), and gradient
 * descent on the parameters sees the same metric B^T diag(s^2) B.  It needs no
 * Hermitian bookkeeping, has exactly one parameter per voxel, and its adjoint
 * is the same matrices (symmetric).  The DCT-II basis is offered too: it
 * avoids the wrap-around of periodic bases (a blob at one face leaking to
 * the opposite face), which matters for brains that touch the grid edge. */
#include "neurofv/vis_ops.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NFV_PI 3.14159265358979323846

struct nfv_fourier {
    nfv_fourier_basis basis;
    int dims[3];
    int vec;            /* VEC the kernels were built with */
    int ib, rb, jb;     /* row blocking of basis_inner / basis_last, vectors per row of both */
    char opts[64];
    float *scale_host;  /* D*H*W */
    cl_mem scale;       /* D*H*W */
    /* Per axis a (0 = D, 1 = H, 2 = W), per direction (0 decode, 1 adjoint):
     * the matrix in the layout its pass uses (basis_inner for D and H,
     * basis_last, transposed and padded, for W). */
    cl_mem mat[3][2];
    int ldb;            /* row stride of the W-axis matrices */
    cl_mem tmp[2];      /* scratch, tmp_numel floats each (+ slack) */
    size_t tmp_numel;
};

/* B[k][i] (n x n, double): basis function k at position i. */
static void basis_matrix(nfv_fourier_basis basis, int n, double *B)
{
    for (int k = 0; k < n; k++)
        for (int i = 0; i < n; i++) {
            if (basis == NFV_FOURIER_DFT) {
                double t = 2.0 * NFV_PI * (double)((long)k * i % n) / n;
                B[(size_t)k * n + i] = (cos(t) + sin(t)) / sqrt((double)n);
            } else {
                double a = k == 0 ? sqrt(1.0 / n) : sqrt(2.0 / n);
                B[(size_t)k * n + i] = a * cos(NFV_PI * k * (2.0 * i + 1.0) / (2.0 * n));
            }
        }
}

/* |frequency| of coefficient k along an axis of size n, in cycles per voxel. */
static double axis_frequency(nfv_fourier_basis basis, int k, int n)
{
    if (basis == NFV_FOURIER_DFT) return (double)(k <= n - k ? k : n - k) / n;
    return (double)k / (2.0 * n);
}

static cl_mem upload_floats(nfv_context *ctx, const float *data, size_t count, cl_int *err)
{
    return clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, count * sizeof(float),
                          (void *)data, err);
}

void nfv_fourier_free(nfv_fourier *f)
{
    if (!f) return;
    if (f->scale) clReleaseMemObject(f->scale);
    for (int a = 0; a < 3; a++)
        for (int d = 0; d < 2; d++)
            if (f->mat[a][d]) clReleaseMemObject(f->mat[a][d]);
    for (int i = 0; i < 2; i++)
        if (f->tmp[i]) clReleaseMemObject(f->tmp[i]);
    free(f->scale_host);
    free(f);
}

const float *nfv_fourier_scale(const nfv_fourier *f) { return f->scale_host; }

/* Build the matrices of one axis for both directions. */
static nfv_status axis_matrices(nfv_context *ctx, nfv_fourier *f, int axis)
{
    int n = f->dims[axis];
    double *B = malloc((size_t)n * n * sizeof *B);
    int last = axis == 2;
    int rows = last ? n : (n + f->ib - 1) / f->ib * f->ib;
    size_t count = last ? (size_t)n * f->ldb : (size_t)rows * n;
    float *m = calloc(count + 64, sizeof *m);
    if (!B || !m) {
        free(B);
        free(m);
        return nfv_fail(NFV_ERR_NO_MEMORY, "fourier plan: out of memory");
    }
    basis_matrix(f->basis, n, B);
    nfv_status st = NFV_OK;
    for (int dir = 0; dir < 2 && st == NFV_OK; dir++) {
        /* Pass matrix M[i][k]: decode M = B^T (M[i][k] = B[k][i]), adjoint M = B. */
        memset(m, 0, (count + 64) * sizeof *m);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++) {
                double v = dir == 0 ? B[(size_t)k * n + i] : B[(size_t)i * n + k];
                if (last) m[(size_t)k * f->ldb + i] = (float)v; /* Mt[k][i] */
                else m[(size_t)i * n + k] = (float)v;
            }
        cl_int err;
        f->mat[axis][dir] = upload_floats(ctx, m, count + 64, &err);
        if (err != CL_SUCCESS) st = nfv_cl_fail(err, "clCreateBuffer", "fourier basis matrix", __FILE__, __LINE__);
    }
    free(B);
    free(m);
    return st;
}

nfv_status nfv_fourier_create(nfv_context *ctx, nfv_fourier_basis basis, int D, int H, int W, float decay,
                              nfv_fourier **out)
{
    *out = NULL;
    if (basis != NFV_FOURIER_DFT && basis != NFV_FOURIER_DCT)
        return nfv_fail(NFV_ERR_INVALID_ARG, "fourier plan: unknown basis %d", (int)basis);
    if (D < 1 || H < 1 || W < 1 || D > 4096 || H > 4096 || W > 4096 || (long long)D * H * W > INT_MAX)
        return nfv_fail(NFV_ERR_INVALID_ARG, "fourier plan: volume %dx%dx%d out of range", D, H, W);
    if (!(decay >= 0.0f) || decay > 8.0f)
        return nfv_fail(NFV_ERR_INVALID_ARG, "fourier plan: decay %g outside [0, 8]", (double)decay);
    nfv_fourier *f = calloc(1, sizeof *f);
    if (!f) return nfv_fail(NFV_ERR_NO_MEMORY, "fourier plan: out of memory");
    f->basis = basis;
    f->dims[0] = D;
    f->dims[1] = H;
    f->dims[2] = W;
    f->vec = nfv_context_vector_width(ctx);
    if (f->vec != 1 && f->vec != 2 && f->vec != 4 && f->vec != 8 && f->vec != 16) f->vec = 4;
    /* cl/fft.cl: 6 rows x 2 vectors per work-item; 8 x 2 and 4 x 2 measured
     * the same on PoCL AVX-512 (visualize --param fourier at batch 8). */
    f->ib = 6;
    f->rb = 6;
    f->jb = 2;
    f->ldb = (W + f->vec * f->jb - 1) / (f->vec * f->jb) * f->vec * f->jb;
    snprintf(f->opts, sizeof f->opts, "-DVEC=%d -DIB=%d -DRB=%d -DJB=%d", f->vec, f->ib, f->rb, f->jb);

    /* s(k) = 1 / max(|f|, 1/max(D,H,W))^decay, normalized to mean(s^2) = 1. */
    size_t vol = (size_t)D * H * W;
    f->scale_host = malloc(vol * sizeof *f->scale_host);
    if (!f->scale_host) {
        nfv_fourier_free(f);
        return nfv_fail(NFV_ERR_NO_MEMORY, "fourier plan: out of memory");
    }
    int maxdim = D > H ? (D > W ? D : W) : (H > W ? H : W);
    double floor_f = 1.0 / maxdim, sum2 = 0.0;
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double fz = axis_frequency(basis, z, D), fy = axis_frequency(basis, y, H);
                double fx = axis_frequency(basis, x, W);
                double fr = sqrt(fz * fz + fy * fy + fx * fx);
                double s = pow(fr > floor_f ? fr : floor_f, -(double)decay);
                f->scale_host[((size_t)z * H + y) * W + x] = (float)s;
                sum2 += s * s;
            }
    double norm = 1.0 / sqrt(sum2 / (double)vol);
    for (size_t i = 0; i < vol; i++) f->scale_host[i] = (float)(f->scale_host[i] * norm);
    cl_int err;
    f->scale = upload_floats(ctx, f->scale_host, vol, &err);
    if (err != CL_SUCCESS) {
        nfv_fourier_free(f);
        return nfv_cl_fail(err, "clCreateBuffer", "fourier scale", __FILE__, __LINE__);
    }
    for (int a = 0; a < 3; a++) {
        nfv_status st = axis_matrices(ctx, f, a);
        if (st != NFV_OK) {
            nfv_fourier_free(f);
            return st;
        }
    }
    *out = f;
    return NFV_OK;
}

static nfv_status check_volume(const char *op, const nfv_fourier *f, const nfv_tensor *t, const char *what, int *n)
{
    char s[64];
    int ok = 0;
    if (t && t->buf && t->ndim >= 3 && t->ndim <= 5) {
        int nd = t->ndim;
        ok = t->shape[nd - 3] == f->dims[0] && t->shape[nd - 2] == f->dims[1] && t->shape[nd - 1] == f->dims[2];
        /* (N, 1, D, H, W), (1, D, H, W) or (D, H, W). */
        if (nd == 5) ok = ok && t->shape[1] == 1;
        if (nd == 4) ok = ok && t->shape[0] == 1;
        *n = nd == 5 ? t->shape[0] : 1;
    }
    if (!ok)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected (N, 1, %d, %d, %d)", op, what,
                        t && t->buf ? nfv_shape_str(t, s, sizeof s) : "(none)", f->dims[0], f->dims[1],
                        f->dims[2]);
    return NFV_OK;
}

static nfv_status ensure_scratch(nfv_context *ctx, nfv_fourier *f, size_t numel)
{
    if (f->tmp_numel >= numel) return NFV_OK;
    for (int i = 0; i < 2; i++) {
        if (f->tmp[i]) clReleaseMemObject(f->tmp[i]);
        f->tmp[i] = NULL;
    }
    f->tmp_numel = 0;
    for (int i = 0; i < 2; i++) {
        cl_int err;
        /* Slack: vector loads read up to VEC-1 floats past the last row. */
        f->tmp[i] = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_WRITE, (numel + 64) * sizeof(float), NULL, &err);
        if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", "fourier scratch", __FILE__, __LINE__);
    }
    f->tmp_numel = numel;
    return NFV_OK;
}

/* One pass along axis a (0 D, 1 H, 2 W) of a batch of n volumes. */
static nfv_status axis_pass(nfv_context *ctx, nfv_fourier *f, int a, int dir, int n, cl_mem in, cl_mem out)
{
    int D = f->dims[0], H = f->dims[1], W = f->dims[2];
    cl_kernel k;
    if (a == 2) {
        NFV_TRY(nfv_kernel_get(ctx, "fft", f->opts, "basis_last", &k));
        int rows = n * D * H;
        NFV_ARG(k, "basis_last", 0, in);
        NFV_ARG(k, "basis_last", 1, out);
        NFV_ARG(k, "basis_last", 2, f->mat[a][dir]);
        NFV_ARG(k, "basis_last", 3, W);
        NFV_ARG(k, "basis_last", 4, f->ldb);
        NFV_ARG(k, "basis_last", 5, rows);
        size_t global[2] = {(size_t)(f->ldb / (f->vec * f->jb)), (size_t)((rows + f->rb - 1) / f->rb)};
        return nfv_kernel_launch(ctx, k, 2, global, NULL);
    }
    NFV_TRY(nfv_kernel_get(ctx, "fft", f->opts, "basis_inner", &k));
    int len = f->dims[a], inner = a == 0 ? H * W : W, outer = a == 0 ? n : n * D;
    NFV_ARG(k, "basis_inner", 0, in);
    NFV_ARG(k, "basis_inner", 1, out);
    NFV_ARG(k, "basis_inner", 2, f->mat[a][dir]);
    NFV_ARG(k, "basis_inner", 3, len);
    NFV_ARG(k, "basis_inner", 4, inner);
    const int cols = f->vec * f->jb;
    size_t global[3] = {(size_t)((inner + cols - 1) / cols), (size_t)((len + f->ib - 1) / f->ib), (size_t)outer};
    return nfv_kernel_launch(ctx, k, 3, global, NULL);
}

/* out = s * in for n volumes. */
static nfv_status scale_pass(nfv_context *ctx, nfv_fourier *f, cl_mem in, cl_mem out, int n)
{
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "fft", f->opts, "spectrum_scale", &k));
    cl_int vol = f->dims[0] * f->dims[1] * f->dims[2];
    NFV_ARG(k, "spectrum_scale", 0, in);
    NFV_ARG(k, "spectrum_scale", 1, out);
    NFV_ARG(k, "spectrum_scale", 2, f->scale);
    NFV_ARG(k, "spectrum_scale", 3, vol);
    size_t global[2] = {(size_t)(vol + f->vec - 1) / f->vec, (size_t)n};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

nfv_status nfv_fourier_decode(nfv_context *ctx, nfv_fourier *f, const nfv_tensor *param, nfv_tensor *image)
{
    int n, ni;
    NFV_TRY(check_volume("fourier decode", f, param, "param", &n));
    NFV_TRY(check_volume("fourier decode", f, image, "image", &ni));
    if (n != ni) return nfv_fail(NFV_ERR_INVALID_ARG, "fourier decode: param has %d samples, image %d", n, ni);
    NFV_TRY(ensure_scratch(ctx, f, param->numel));
    /* s * param -> tmp0, W: tmp0 -> tmp1, H: tmp1 -> tmp0, D: tmp0 -> image. */
    NFV_TRY(scale_pass(ctx, f, param->buf, f->tmp[0], n));
    NFV_TRY(axis_pass(ctx, f, 2, 0, n, f->tmp[0], f->tmp[1]));
    NFV_TRY(axis_pass(ctx, f, 1, 0, n, f->tmp[1], f->tmp[0]));
    return axis_pass(ctx, f, 0, 0, n, f->tmp[0], image->buf);
}

nfv_status nfv_fourier_adjoint(nfv_context *ctx, nfv_fourier *f, const nfv_tensor *dimage, nfv_tensor *dparam)
{
    int n, np;
    NFV_TRY(check_volume("fourier adjoint", f, dimage, "dimage", &n));
    NFV_TRY(check_volume("fourier adjoint", f, dparam, "dparam", &np));
    if (n != np) return nfv_fail(NFV_ERR_INVALID_ARG, "fourier adjoint: dimage has %d samples, dparam %d", n, np);
    NFV_TRY(ensure_scratch(ctx, f, dimage->numel));
    /* The three axis passes commute; adjoint = s * (B_D B_H B_W) dimage. */
    NFV_TRY(axis_pass(ctx, f, 2, 1, n, dimage->buf, f->tmp[0]));
    NFV_TRY(axis_pass(ctx, f, 1, 1, n, f->tmp[0], f->tmp[1]));
    NFV_TRY(axis_pass(ctx, f, 0, 1, n, f->tmp[1], f->tmp[0]));
    return scale_pass(ctx, f, f->tmp[0], dparam->buf, n);
}
