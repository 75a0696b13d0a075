/* Building blocks of feature visualization (activation maximization), each on
 * the device, independent of the model:
 *
 *   param -> [Fourier decode] -> image -> [pad, jitter, affine warp] -> model -> objective
 *   plus penalties (L1, L2, total variation), a brain mask and Gaussian blur.
 *
 * Conventions (all ops, as in ops.h):
 *  - Volumes are batches (N, 1, D, H, W) float32 (several targets or starts in
 *    one batch); a tensor of rank 3 (D, H, W) or 4 (1, D, H, W) counts as N = 1.
 *    The channel dimension must be 1.
 *  - A mask is (D, H, W) / (1, 1, D, H, W), shared by every sample, or
 *    (N, 1, D, H, W), one per sample; values are weights (0 outside, 1 inside).
 *  - Work is queued, not waited for.  Outputs are overwritten unless the
 *    documentation says "accumulated" (g += ...).
 *  - Every forward op has an adjoint (the transpose of the linear map, or of
 *    its Jacobian), which is what backpropagation needs: dx = T* dy.
 *  - Random transform parameters are drawn on the host (seeded) and passed per
 *    sample, so a run is reproducible on any device. */
#ifndef NEUROFV_VIS_OPS_H
#define NEUROFV_VIS_OPS_H

#include <stdint.h>

#include "neurofv/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Penalties (cl/vis.cl, src/regularize.c) --------------------------- */

typedef enum nfv_penalty_kind {
    NFV_PENALTY_L1,     /* P = sum m |x|; subgradient sign(x) (0 at x = 0) */
    NFV_PENALTY_L2,     /* P = sum m x^2;  gradient 2 m x */
    NFV_PENALTY_TV,     /* smooth isotropic 3D TV: P = sum_v m_v sqrt(dz^2 + dy^2 + dx^2 + eps) */
    NFV_PENALTY_TV_SQ   /* squared 3D TV:          P = sum_v m_v (dz^2 + dy^2 + dx^2) */
} nfv_penalty_kind;

/* Total variation uses forward differences dz = x[z+1,y,x] - x[z,y,x] (and
 * likewise dy, dx), taken as 0 on the last plane of each axis (Neumann
 * boundary), so a constant volume has zero TV gradient.  eps (> 0) keeps the
 * smooth variant differentiable at flat regions; ignored by the others.
 *
 * For x (N, 1, D, H, W) and mask m (see above, or NULL = all ones):
 *   value (N) or (1) or NULL:  value[n] = weight * P(x_n) (overwritten; with a
 *                              1-element tensor, the sum over the batch);
 *   grad  (like x) or NULL:    grad += weight * dP/dx (accumulated). */
nfv_status nfv_penalty(nfv_context *ctx, nfv_penalty_kind kind, float weight, float eps, const nfv_tensor *x,
                       const nfv_tensor *mask, nfv_tensor *value, nfv_tensor *grad);

/* t (N, 1, D, H, W) *= mask: zero a gradient (or an image) outside the brain. */
nfv_status nfv_mask_apply(nfv_context *ctx, const nfv_tensor *mask, nfv_tensor *t);

/* ---- Gaussian blur (cl/vis.cl, src/regularize.c) ----------------------- */

typedef enum nfv_boundary {
    NFV_BOUNDARY_ZERO,      /* samples outside the volume are 0 */
    NFV_BOUNDARY_REPLICATE  /* samples outside take the nearest edge voxel */
} nfv_boundary;

/* y (N, 1, D, H, W) = separable Gaussian blur of x, standard deviation sigma
 * voxels (> 0) on each axis, radius ceil(3 sigma), weights summing to 1.
 * y may not be x.  adjoint != 0 applies the transpose instead: identical for
 * NFV_BOUNDARY_ZERO (symmetric kernel, so the blur is self-adjoint); for
 * NFV_BOUNDARY_REPLICATE the edge voxels collect the weight of the clamped
 * samples. */
nfv_status nfv_gaussian_blur(nfv_context *ctx, float sigma, nfv_boundary boundary, int adjoint, const nfv_tensor *x,
                             nfv_tensor *y);

/* ---- Transforms (cl/transform.cl, src/transform.c) --------------------- */

/* y (N, 1, D+2p0, H+2p1, W+2p2) = x (N, 1, D, H, W) padded by pad[3] = {p0, p1,
 * p2} voxels on both sides of each axis, with `value` (NFV_BOUNDARY_ZERO mode
 * pads with `value`) or the nearest edge voxel (NFV_BOUNDARY_REPLICATE). */
nfv_status nfv_pad(nfv_context *ctx, const int pad[3], nfv_boundary mode, float value, const nfv_tensor *x,
                   nfv_tensor *y);
/* dx (N, 1, D, H, W) = adjoint of nfv_pad applied to dy (padded shape): the
 * centre crop, plus, for replicate, the sum of every padded copy of an edge
 * voxel.  (The constant `value` does not depend on x.) */
nfv_status nfv_pad_adjoint(nfv_context *ctx, const int pad[3], nfv_boundary mode, const nfv_tensor *dy,
                           nfv_tensor *dx);

/* Integer translation with zero fill: y[n, z, y, x] = x[n, z - s0, y - s1, x - s2]
 * with shift (N, 3) int given on the host as {s0, s1, s2} per sample (content
 * moves by +shift).  x and y have the same shape (N, 1, D, H, W).
 * The adjoint is the same op with -shift: nfv_jitter(..., adjoint = 1). */
nfv_status nfv_jitter(nfv_context *ctx, const int *shift, int adjoint, const nfv_tensor *x, nfv_tensor *y);

/* Affine warp with trilinear interpolation and zero fill:
 *   y[n, p] = sum over the 8 corners c of floor(q) of w_c(q) x[n, c],
 *   q = A_n p + b_n  (p = (z, y, x) voxel index in y, q in x's voxel index space),
 * with matrix (N, 12) on the host, per sample row-major {A00 A01 A02 b0  A10 A11
 * A12 b1  A20 A21 A22 b2}.  x (N, 1, Di, Hi, Wi), y (N, 1, Do, Ho, Wo): sizes may
 * differ (a warp can also crop or zero-pad).
 * A must be invertible. */
nfv_status nfv_affine_warp(nfv_context *ctx, const float *matrix, const nfv_tensor *x, nfv_tensor *y);
/* dx = exact transpose of nfv_affine_warp applied to dy.  Computed as a
 * gather (no atomics, deterministic): for each input voxel v, the output
 * voxels p whose sample point q lies in the open cube (v - 1, v + 1)^3 are
 * found through the inverse map (a box of about 3-4 voxels per axis for small
 * rotations and scales near 1) and weighted exactly as the forward did.
 * box (z0, z1, y0, y1, x0, x1, half-open, within dx) or NULL: dx only there,
 * 0 elsewhere (a caller that masks the gradient asks for the mask's box). */
nfv_status nfv_affine_warp_adjoint(nfv_context *ctx, const float *matrix, const nfv_tensor *dy, nfv_tensor *dx,
                                   const int box[6]);

/* Matrix (12 floats, layout above) of "scale by `scale`, rotate by angles
 * (radians, about the z, y, x axes: R = Rz Ry Rx), then translate by shift
 * (voxels, z y x; may be NULL)" about the volume centres: the content at the
 * centre of x lands at the centre of y plus shift.  Each rotation turns the
 * first axis of its plane towards the second ((y, x) for z, (z, x) for y,
 * (z, y) for x).  Entries within 1e-6 of an integer are snapped to it, so
 * quarter turns given as float angles permute voxels exactly.
 * in_dims, out_dims = {D, H, W}. */
void nfv_affine_about_centre(const int in_dims[3], const int out_dims[3], float scale, const float angles[3],
                             const float shift[3], float matrix[12]);

/* One step's random transformation-robustness parameters for n samples, as
 * the visualization loop draws them: sample i from its own splitmix64 stream
 * streams[i] (same sequence on every platform), which advances by 7 draws
 * whatever is asked for (scale; angles about z, y, x; shifts along z, y, x),
 * so a sample's transforms do not depend on the others in its batch.  Scale
 * uniform in [scale_min, scale_max], each angle uniform in [-max_angle,
 * max_angle] radians, integer shift uniform in [-jitter, jitter] per axis.
 * Either output may be NULL: matrix gets n x 12 floats
 * (nfv_affine_about_centre from in_dims to out_dims with that scale, those
 * angles and the shift as the translation), shift n x 3 ints. */
void nfv_random_transforms(uint64_t *streams, int n, const int in_dims[3], const int out_dims[3], float scale_min,
                           float scale_max, float max_angle, int jitter, float *matrix, int *shift);

/* ---- Fourier parameterization (cl/fft.cl, src/fft.c) ------------------- */

typedef enum nfv_fourier_basis {
    /* Separable real DFT basis (the Hartley cas() functions per axis):
     * periodic, and with the 1/f scaling below exactly equivalent to Lucid's
     * complex rfft parameterization (see src/fft.c). */
    NFV_FOURIER_DFT,
    /* Separable DCT-II basis: no wrap-around across opposite faces. */
    NFV_FOURIER_DCT
} nfv_fourier_basis;

/* A plan for one volume size (D, H, W), any sizes (primes included). */
typedef struct nfv_fourier nfv_fourier;

/* decay: the exponent of the 1/f scaling (Lucid: 1).  The per-coefficient
 * scale is s(k) = 1 / max(|f(k)|, 1/max(D,H,W))^decay, |f| in cycles per
 * voxel, then normalized so that mean(s^2) = 1: unit-variance parameters
 * decode to unit-variance images. */
nfv_status nfv_fourier_create(nfv_context *ctx, nfv_fourier_basis basis, int D, int H, int W, float decay,
                              nfv_fourier **out);
void nfv_fourier_free(nfv_fourier *f);
/* The scale s (D*H*W floats, row-major (kz, ky, kx)) on the host. */
const float *nfv_fourier_scale(const nfv_fourier *f);

/* image (N, 1, D, H, W) = B^T (s * param), param (N, 1, D, H, W), with B the
 * orthonormal separable basis (B_D x B_H x B_W).  For the DFT basis, the
 * coefficient k along an axis of size n is the function
 *   cas(2 pi k i / n) / sqrt(n),  cas t = cos t + sin t. */
nfv_status nfv_fourier_decode(nfv_context *ctx, nfv_fourier *f, const nfv_tensor *param, nfv_tensor *image);
/* dparam = s * B dimage (the adjoint of decode), overwritten. */
nfv_status nfv_fourier_adjoint(nfv_context *ctx, nfv_fourier *f, const nfv_tensor *dimage, nfv_tensor *dparam);

/* ---- MACO: magnitude-constrained phase (cl/maco.cl, src/vis/maco.c) ------
 *
 * image (N, 1, D, H, W) = range(B^T (A * cas((phi - phi[-k]) / 2))): the
 * phase phi (N, 1, D, H, W) is the parameter, the amplitude A (D, H, W) the
 * cohort's mean amplitude spectrum (fixed), B the orthonormal Hartley basis
 * of the DFT plan below, range(x) = mid + half tanh((x - mid) / half) with
 * [mid - half, mid + half] = [lo, hi] the training data's intensity range. */
typedef struct nfv_maco nfv_maco;
nfv_status nfv_maco_create(nfv_context *ctx, int D, int H, int W, const float *amplitude, float lo, float hi,
                           nfv_maco **out);
void nfv_maco_free(nfv_maco *mc);
nfv_status nfv_maco_decode(nfv_context *ctx, nfv_maco *mc, const nfv_tensor *phi, nfv_tensor *image);
/* dphi = d/dphi of <dimage, image(phi)>; image is decode's output for phi.
 * dimage is overwritten (it receives the gradient before the range map). */
nfv_status nfv_maco_adjoint(nfv_context *ctx, nfv_maco *mc, const nfv_tensor *phi, const nfv_tensor *image,
                            nfv_tensor *dimage, nfv_tensor *dphi);

/* The cohort spectrum: begin, add each preprocessed volume (D*H*W floats on
 * the model grid), end gives amplitude (D*H*W) = mean over volumes of
 * |F(k)| (orthonormal DFT), lo / hi = mean of the volumes' minima / maxima,
 * count; then free. */
typedef struct nfv_spectrum_acc nfv_spectrum_acc;
nfv_status nfv_spectrum_begin(nfv_context *ctx, int D, int H, int W, nfv_spectrum_acc **out);
nfv_status nfv_spectrum_add(nfv_spectrum_acc *a, const float *volume);
nfv_status nfv_spectrum_end(nfv_spectrum_acc *a, float *amplitude, float *lo, float *hi, int *count);
void nfv_spectrum_free(nfv_spectrum_acc *a);

/* MACO's transformation recipe: each step a random crop whose edge is a
 * fraction `crop` of the volume's (shrinking linearly from crop_max at step
 * 1 to crop_min at step `steps`: nfv_maco_crop_at), resized to the model grid
 * by the affine warp (matrix n x 12, layout of nfv_affine_warp; in and out
 * dims equal), then Gaussian noise of SD sigma on the model input.  Sample
 * i draws 3 numbers (crop origin z, y, x) from streams[i]; the noise draws
 * from the same stream (download, add, upload: host-side, reproducible). */
float nfv_maco_crop_at(float crop_max, float crop_min, int step, int steps);
void nfv_maco_crops(uint64_t *streams, int n, const int dims[3], float crop, float *matrix);
nfv_status nfv_add_noise(nfv_context *ctx, uint64_t *streams, int n, float sigma, nfv_tensor *x);

/* ---- Diversity (src/vis/diversity.c) ------------------------------------
 *
 * Lucid's diversity term of K samples' activations a (K, C, S) at one
 * layer: G_i = a_i a_i^T / S, loss = w / K sum_{i != j} cos(G_i, G_j) (the
 * objective gains -loss).  Returns the loss; grad (K, C, S, may be NULL)
 * receives d loss / d a.  In double (the loop converts). */
double nfv_diversity_loss(const double *a, int K, int C, size_t S, double w, double *grad);

/* Feature accentuation's --stay penalty (src/vis/accentuate.c): loss =
 * w mean_p (a_p - ref_p)^2 over P activations; grad (may be NULL) = d loss / d a. */
double nfv_stay_loss(const double *a, const double *ref, size_t P, double w, double *grad);

/* ---- Normalized cross-correlation, host side (src/ncc.c) --------------- */

typedef struct nfv_ncc_result {
    double score;      /* best Pearson correlation in [-1, 1] (-2 when no position was valid) */
    int pos[3];        /* z, y, x of the template's centre voxel (index (td/2, th/2, tw/2)) */
    long positions;    /* how many positions were scored */
} nfv_ncc_result;

/* Slide tmpl (td, th, tw) over vol (D, H, W) at every position where it fits
 * entirely and its shape (the voxels with tmpl > 0) with a one-voxel halo
 * (its 26 neighbours in the box) lies inside mask (D*H*W, > 0.5; NULL = all;
 * a template without a positive voxel needs its whole box), scoring the
 * Pearson correlation of the template with the patch over the whole box;
 * the best is returned.  The shape and its halo, not only the centre: a
 * visualization optimized inside a brain mask is cut off flat at the mask's
 * edge, and a blob cut by that edge is not a shape the model drew.  Not the
 * whole box either: the corners of a 45 mm box around a real lesion in deep
 * white matter often lie outside the brain.  Under the whole-box rule the
 * lesion masks of 20 held-out pyramids (3 mm grid) scored a median NCC of
 * 0.36 with their own template and 1 of 20 beat the other shapes; under
 * this rule 0.90 and 19 of 20 (a NumPy re-implementation of this search;
 * compare prints the same check, nfv_truth_reference).  Flat patches (zero
 * variance) score 0.  Cost: positions x template voxels. */
nfv_status nfv_ncc_search(const float *vol, const int dims[3], const float *mask, const float *tmpl,
                          const int tdims[3], nfv_ncc_result *out);
/* The search of nfv_ncc_search without a mask, over many volumes at once
 * and by FFT: "where in each subject does this picture's pattern appear,
 * and how well?"  A bank holds the spectra of n volumes (n, D, H, W), which
 * it does not copy (they must outlive it); nfv_ncc_bank_search writes best
 * (n): each volume's best Pearson correlation with tmpl (td, th, tw) over
 * every position where the box fits, the same numbers as
 * nfv_ncc_search(vol, dims, NULL, ...) to single precision, but for patches
 * whose SD is under 1 % of their volume's, which score 0 as flat ones do
 * (in near-flat background the FFT's rounding would swamp them).  Cost: one FFT
 * per volume at creation (and n * D*H*(W/2+1) complex floats), then one FFT
 * per volume and search, on all cores. */
typedef struct nfv_ncc_bank nfv_ncc_bank;
nfv_status nfv_ncc_bank_create(const float *volumes, int n, const int dims[3], nfv_ncc_bank **out);
nfv_status nfv_ncc_bank_search(const nfv_ncc_bank *b, const float *tmpl, const int tdims[3], double *best);
void nfv_ncc_bank_free(nfv_ncc_bank *b);
/* Pearson correlation of two volumes of n voxels over mask (NULL = all). */
double nfv_ncc_volume(const float *a, const float *b, const float *mask, size_t n);

#ifdef __cplusplus
}
#endif
#endif
