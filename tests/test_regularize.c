/* Penalties (L1, L2, smooth and squared TV), mask, Gaussian blur and NCC
 * against the double references of ref_vis.c, and the references' gradients
 * against central finite differences in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis_ops.h"
#include "ref_vis.h"
#include "test.h"

static const char *kind_name[] = {"L1", "L2", "TV", "TV_SQ"};

/* Random values kept away from 0 so L1's kink is never within the
 * finite-difference step. */
static float *away_from_zero(size_t n, unsigned seed)
{
    float *x = test_random(n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 0.05f) x[i] = x[i] < 0 ? -0.05f - x[i] : 0.05f + x[i];
    return x;
}

/* One configuration: kind, batch n, mask none/shared/per-sample. */
static void check_penalty(nfv_penalty_kind kind, int n, int mask_mode, const int dims[3])
{
    size_t vol = (size_t)dims[0] * dims[1] * dims[2], numel = vol * n;
    int shape[5] = {n, 1, dims[0], dims[1], dims[2]};
    int per_sample = mask_mode == 2;
    size_t mnumel = per_sample ? numel : vol;
    int mshape[5] = {per_sample ? n : 1, 1, dims[0], dims[1], dims[2]};
    float *x = away_from_zero(numel, 11 + kind + 3 * n);
    float *g0 = test_random(numel, 5 + kind, -1.0f, 1.0f);
    /* A soft mask: weights in [0, 1] with a third exactly zero. */
    float *m = test_random(mnumel, 17, -0.5f, 1.0f);
    for (size_t i = 0; i < mnumel; i++) m[i] = m[i] < 0 ? 0.0f : m[i];
    const float weight = 0.7f, eps = 0.01f;

    double *xd = ref_to_double(x, numel), *md = mask_mode ? ref_to_double(m, mnumel) : NULL;
    double *want_v = malloc(n * sizeof *want_v), *want_g = malloc(numel * sizeof *want_g);
    ref_penalty(kind, eps, xd, md, per_sample, n, dims, want_v, want_g);

    nfv_tensor tx, tm = {0}, tg, tv, tv1;
    CHECK_OK(test_tensor(&tx, 5, shape, x));
    CHECK_OK(test_tensor(&tg, 5, shape, g0));
    if (mask_mode) CHECK_OK(test_tensor(&tm, 5, mshape, m));
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &tv, 1, n));
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &tv1, 1, 1));
    CHECK_OK(nfv_penalty(test_ctx(), kind, weight, eps, &tx, mask_mode ? &tm : NULL, &tv, &tg));
    CHECK_OK(nfv_penalty(test_ctx(), kind, weight, eps, &tx, mask_mode ? &tm : NULL, &tv1, NULL));
    float *gv = test_download(&tv), *gv1 = test_download(&tv1), *gg = test_download(&tg);
    double *wv = malloc(n * sizeof *wv), total = 0;
    double *wg = malloc(numel * sizeof *wg);
    for (int s = 0; s < n; s++) total += wv[s] = weight * want_v[s];
    for (size_t i = 0; i < numel; i++) wg[i] = g0[i] + weight * want_g[i];
    char what[96];
    /* float sums of ~700 terms of size ~1: rel 1e-5; the gradient is at most
     * a few float operations per term: 1e-5 absolute on values of order 1. */
    snprintf(what, sizeof what, "%s n=%d mask=%d value", kind_name[kind], n, mask_mode);
    if (gv) CHECK_CLOSE(what, gv, wv, n, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s n=%d mask=%d batch total", kind_name[kind], n, mask_mode);
    if (gv1) CHECK_CLOSE(what, gv1, &total, 1, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s n=%d mask=%d grad accumulated", kind_name[kind], n, mask_mode);
    if (gg) CHECK_CLOSE(what, gg, wg, numel, 2e-5, 1e-5);

    /* The reference gradient against central differences of the reference
     * value in double (h = 1e-6: truncation ~h^2 * P''' and round-off
     * ~1e-16/h, both far below 1e-6). */
    double worst = 0;
    double *v1 = malloc(n * sizeof *v1), *v2 = malloc(n * sizeof *v2);
    for (size_t i = 0; i < numel; i += (kind >= NFV_PENALTY_TV ? 1 : 7)) {
        int s = (int)(i / vol);
        double keep = xd[i], h = 1e-6;
        xd[i] = keep + h;
        ref_penalty(kind, eps, xd, md, per_sample, n, dims, v1, NULL);
        xd[i] = keep - h;
        ref_penalty(kind, eps, xd, md, per_sample, n, dims, v2, NULL);
        xd[i] = keep;
        double fd = (v1[s] - v2[s]) / (2 * h);
        if (fabs(fd - want_g[i]) > worst) worst = fabs(fd - want_g[i]);
    }
    CHECK(worst < 1e-6, "%s n=%d mask=%d: reference gradient vs finite differences, worst %.3g", kind_name[kind], n,
          mask_mode, worst);

    free(v1);
    free(v2);
    free(gv);
    free(gv1);
    free(gg);
    free(wv);
    free(wg);
    free(want_v);
    free(want_g);
    free(xd);
    free(md);
    free(x);
    free(g0);
    free(m);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&tm);
    nfv_tensor_free(&tg);
    nfv_tensor_free(&tv);
    nfv_tensor_free(&tv1);
}

TEST(vis_penalty_gradients)
{
    const int dims[3] = {7, 9, 11};
    for (int kind = NFV_PENALTY_L1; kind <= NFV_PENALTY_TV_SQ; kind++) {
        check_penalty((nfv_penalty_kind)kind, 1, 0, dims);
        check_penalty((nfv_penalty_kind)kind, 3, 1, dims);
        check_penalty((nfv_penalty_kind)kind, 3, 2, dims);
    }
    /* Degenerate axes of length 1 (a single slice). */
    const int flat[3] = {1, 5, 3};
    check_penalty(NFV_PENALTY_TV, 3, 1, flat);
    /* Rows longer than the vector width (16) and not a multiple of it:
     * whole blocks, shifted neighbour loads across blocks, and a tail. */
    const int wide[3] = {4, 5, 37};
    for (int kind = NFV_PENALTY_L1; kind <= NFV_PENALTY_TV_SQ; kind++)
        check_penalty((nfv_penalty_kind)kind, 2, 2, wide);
    check_penalty(NFV_PENALTY_TV, 1, 0, wide);
}

TEST(vis_penalty_rejects_bad_input)
{
    nfv_tensor x, v, m;
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &x, 5, 2, 1, 3, 4, 5));
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &v, 1, 3));
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &m, 3, 3, 4, 6));
    CHECK(nfv_penalty(test_ctx(), NFV_PENALTY_L2, 1, 0, &x, NULL, &v, NULL) == NFV_ERR_INVALID_ARG,
          "value of 3 elements for N = 2 rejected");
    CHECK(nfv_penalty(test_ctx(), NFV_PENALTY_L2, 1, 0, &x, &m, NULL, &x) == NFV_ERR_INVALID_ARG,
          "mismatched mask rejected");
    CHECK(strstr(nfv_error_message(), "mask") != NULL, "message names the mask: %s", nfv_error_message());
    CHECK(nfv_penalty(test_ctx(), NFV_PENALTY_TV, 1, 0.0f, &x, NULL, NULL, &x) == NFV_ERR_INVALID_ARG,
          "smooth TV with eps = 0 rejected");
    nfv_tensor_free(&x);
    nfv_tensor_free(&v);
    nfv_tensor_free(&m);
}

TEST(vis_mask_apply)
{
    const int n = 3, shape[5] = {n, 1, 7, 9, 11}, mshape[3] = {7, 9, 11};
    size_t vol = 7 * 9 * 11, numel = vol * n;
    float *x = test_random(numel, 3, -2, 2), *m = test_random(vol, 4, 0, 1);
    for (size_t i = 0; i < vol; i++) m[i] = m[i] > 0.5f ? 1.0f : 0.0f;
    double *want = malloc(numel * sizeof *want);
    for (size_t i = 0; i < numel; i++) want[i] = (double)x[i] * m[i % vol];
    nfv_tensor tx, tm;
    CHECK_OK(test_tensor(&tx, 5, shape, x));
    CHECK_OK(test_tensor(&tm, 3, mshape, m));
    CHECK_OK(nfv_mask_apply(test_ctx(), &tm, &tx));
    float *got = test_download(&tx);
    if (got) CHECK_CLOSE("masked", got, want, numel, 0, 0); /* exact: a product by 0 or 1 */
    free(got);
    /* A mask per sample (N, 1, D, H, W), applied to what the shared one left. */
    float *mp = test_random(numel, 5, 0, 1);
    for (size_t i = 0; i < numel; i++) mp[i] = mp[i] > 0.5f ? 1.0f : 0.0f, want[i] *= mp[i];
    nfv_tensor tmp;
    CHECK_OK(test_tensor(&tmp, 5, shape, mp));
    CHECK_OK(nfv_mask_apply(test_ctx(), &tmp, &tx));
    got = test_download(&tx);
    if (got) CHECK_CLOSE("masked per sample", got, want, numel, 0, 0);
    free(got);
    free(mp);
    nfv_tensor_free(&tmp);
    free(x);
    free(m);
    free(want);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&tm);
}

/* Blur of n volumes of size dims against the double reference, both
 * boundaries, forward and adjoint, sigma 0.8 and 2.5, plus the dot-product test. */
static void check_blur(int n, const int dims[3])
{
    const int shape[5] = {n, 1, dims[0], dims[1], dims[2]};
    size_t numel = (size_t)n * dims[0] * dims[1] * dims[2];
    float *x = test_random(numel, 21, -1, 1), *y = test_random(numel, 22, -1, 1);
    double *xd = ref_to_double(x, numel), *want = malloc(numel * sizeof *want);
    nfv_tensor tx, ty, tout;
    CHECK_OK(test_tensor(&tx, 5, shape, x));
    CHECK_OK(test_tensor(&ty, 5, shape, y));
    CHECK_OK(test_tensor(&tout, 5, shape, NULL));
    const float sigmas[2] = {0.8f, 2.5f}; /* radius 3 and 8: the second is wider than a 7-voxel axis */
    for (int si = 0; si < 2; si++)
        for (int rep = 0; rep < 2; rep++) {
            char what[120];
            nfv_boundary b = rep ? NFV_BOUNDARY_REPLICATE : NFV_BOUNDARY_ZERO;
            for (int adj = 0; adj < 2; adj++) {
                ref_blur(sigmas[si], rep, adj, xd, n, dims, want);
                CHECK_OK(nfv_gaussian_blur(test_ctx(), sigmas[si], b, adj, &tx, &tout));
                float *got = test_download(&tout);
                snprintf(what, sizeof what, "blur %dx%dx%dx%d sigma=%.1f %s %s", n, dims[0], dims[1], dims[2],
                         sigmas[si], rep ? "replicate" : "zero", adj ? "adjoint" : "forward");
                /* Three passes of <= 17 float MACs on values <= 1: 1e-6. */
                if (got) CHECK_CLOSE(what, got, want, numel, 1e-6, 1e-5);
                free(got);
            }
            /* Dot-product test <B x, y> = <x, B* y>. */
            CHECK_OK(nfv_gaussian_blur(test_ctx(), sigmas[si], b, 0, &tx, &tout));
            float *bx = test_download(&tout);
            CHECK_OK(nfv_gaussian_blur(test_ctx(), sigmas[si], b, 1, &ty, &tout));
            float *bty = test_download(&tout);
            if (bx && bty) {
                double l = ref_dot_f(bx, y, numel), r = ref_dot_f(x, bty, numel);
                CHECK(fabs(l - r) <= 1e-5 * (fabs(l) + fabs(r) + 1e-3), "%s: <Bx,y> %.9g vs <x,B*y> %.9g", what, l,
                      r);
            }
            free(bx);
            free(bty);
        }
    free(x);
    free(y);
    free(xd);
    free(want);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&ty);
    nfv_tensor_free(&tout);
}

TEST(vis_gaussian_blur)
{
    /* Rows shorter than the vector width (4-16), rows of 37 (whole blocks,
     * interior blocks and a tail), and 1-voxel axes. */
    const int small[3] = {7, 9, 11}, wide[3] = {5, 6, 37}, thin[3] = {3, 1, 1};
    check_blur(3, small);
    check_blur(2, wide);
    check_blur(1, thin);
    nfv_tensor tx, tout;
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &tx, 5, 1, 1, 3, 4, 5));
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &tout, 5, 1, 1, 3, 4, 5));
    CHECK(nfv_gaussian_blur(test_ctx(), 1.0f, NFV_BOUNDARY_ZERO, 0, &tx, &tx) == NFV_ERR_INVALID_ARG,
          "in-place blur rejected");
    CHECK(nfv_gaussian_blur(test_ctx(), 0.0f, NFV_BOUNDARY_ZERO, 0, &tx, &tout) == NFV_ERR_INVALID_ARG,
          "sigma 0 rejected");
    nfv_tensor_free(&tx);
    nfv_tensor_free(&tout);
}

/* A 7^3 template (z, y, x) holding a centred cube of half-width half on zeros. */
static void centred_cube(float t[343], int half)
{
    for (int i = 0; i < 343; i++) {
        int z = i / 49 - 3, y = i / 7 % 7 - 3, x = i % 7 - 3;
        t[i] = (abs(z) <= half && abs(y) <= half && abs(x) <= half) ? 1.0f : 0.0f;
    }
}

/* Plant a 5^3 cube (with noise around it) and find it with a 7^3 template of
 * a cube on a background; also restrict by a mask that excludes it. */
TEST(vis_ncc_finds_planted_cube)
{
    const int dims[3] = {23, 29, 31}, tdims[3] = {7, 7, 7};
    size_t vol = (size_t)23 * 29 * 31;
    float *v = test_random(vol, 31, 0.0f, 0.3f);
    const int at[3] = {14, 9, 20}; /* centre of the planted cube */
    for (int z = -2; z <= 2; z++)
        for (int y = -2; y <= 2; y++)
            for (int x = -2; x <= 2; x++) v[((size_t)(at[0] + z) * 29 + at[1] + y) * 31 + at[2] + x] += 1.0f;
    /* A sphere-ish decoy of radius 3 elsewhere: a cube template must prefer the cube. */
    for (int z = -3; z <= 3; z++)
        for (int y = -3; y <= 3; y++)
            for (int x = -3; x <= 3; x++)
                if (z * z + y * y + x * x <= 9) v[((size_t)(6 + z) * 29 + 20 + y) * 31 + 8 + x] += 1.0f;
    float tmpl[343];
    centred_cube(tmpl, 2);
    nfv_ncc_result r;
    CHECK_OK(nfv_ncc_search(v, dims, NULL, tmpl, tdims, &r));
    CHECK(r.pos[0] == at[0] && r.pos[1] == at[1] && r.pos[2] == at[2],
          "best position %d,%d,%d, planted at %d,%d,%d (score %.3f)", r.pos[0], r.pos[1], r.pos[2], at[0], at[1],
          at[2], r.score);
    CHECK(r.score > 0.8 && r.score <= 1.0 + 1e-9, "score %.4f of a noisy exact match", r.score);
    CHECK(r.positions == (long)(23 - 6) * (29 - 6) * (31 - 6), "every fitting position scored: %ld", r.positions);

    /* Exact match of a patch with itself scores 1 (brute-force Pearson check). */
    float *patch = malloc(343 * sizeof *patch);
    for (int i = 0; i < 343; i++)
        patch[i] = v[((size_t)(at[0] - 3 + i / 49) * 29 + at[1] - 3 + i / 7 % 7) * 31 + at[2] - 3 + i % 7];
    nfv_ncc_result rp;
    CHECK_OK(nfv_ncc_search(v, dims, NULL, patch, tdims, &rp));
    CHECK(fabs(rp.score - 1.0) < 1e-9 && rp.pos[0] == at[0], "a patch of the volume matches itself: %.12f at z=%d",
          rp.score, rp.pos[0]);
    CHECK(fabs(nfv_ncc_volume(patch, tmpl, NULL, 343) - nfv_ncc_volume(tmpl, patch, NULL, 343)) < 1e-12,
          "volume NCC is symmetric");

    /* A mask excluding the cube: the best is elsewhere and scores less. */
    float *mask = malloc(vol * sizeof *mask);
    for (size_t i = 0; i < vol; i++) mask[i] = (int)(i / (29 * 31)) < 10 ? 1.0f : 0.0f;
    nfv_ncc_result rm;
    CHECK_OK(nfv_ncc_search(v, dims, mask, tmpl, tdims, &rm));
    CHECK(rm.pos[0] < 10 && rm.score < r.score, "masked search stays inside the mask: z=%d score %.3f (cube %.3f)",
          rm.pos[0], rm.score, r.score);
    /* The 5^3 cube and its halo fill the 7^3 box: the whole box inside the mask (z < 10), centres z = 3..6. */
    CHECK(rm.pos[0] + 3 < 10 && rm.positions == (long)(10 - 6) * (29 - 6) * (31 - 6),
          "only positions whose whole box is inside the mask: centre z=%d, %ld positions (want %d)", rm.pos[0],
          rm.positions, (10 - 6) * (29 - 6) * (31 - 6));
    /* A small shape in a wide box (a 3^3 cube centred in the 7^3 box): only
     * the shape and its halo (box rows 1..5) must be inside, so centres
     * z = 3..7 count, one more plane than the whole box allows. */
    float small[343];
    centred_cube(small, 1);
    nfv_ncc_result rs;
    CHECK_OK(nfv_ncc_search(v, dims, mask, small, tdims, &rs));
    CHECK(rs.positions == (long)(10 - 5) * (29 - 6) * (31 - 6) && rs.pos[0] + 2 < 10,
          "a small shape counts where it and its halo are inside: %ld positions (want %d), centre z=%d",
          rs.positions, (10 - 5) * (29 - 6) * (31 - 6), rs.pos[0]);
    const int big[3] = {30, 7, 7};
    CHECK(nfv_ncc_search(v, dims, NULL, tmpl, big, &r) == NFV_ERR_INVALID_ARG, "oversized template rejected");
    free(mask);
    free(patch);
    free(v);
}

/* The FFT search over a bank of volumes (src/vis/ncc.c) against the direct
 * search, nfv_ncc_search without a mask, its reference: every volume's best
 * NCC within 1e-4 (single-precision spectra; NCC is in [-1, 1]).  Odd sizes
 * (73 is prime at 3 mm, 109 at 2 mm), a template cut from one volume (its
 * own volume scores 1), a random one, a flat volume (every patch scores 0,
 * as the reference's flat patches do), and one the size of the grid (a
 * single position).  Volume 4 is a bright block (SD ~60) in a near-flat
 * background (SD ~6e-4), as a brain in its grid: its near-flat patches are
 * where float rounding once gave NCCs above 1; they count as flat now, and
 * no score may exceed 1. */
TEST(vis_ncc_bank_matches_direct_search)
{
    enum { N = 5 };
    const int dims[3] = {13, 17, 11};
    size_t vox = (size_t)13 * 17 * 11;
    float *vols = test_random(N * vox, 53, -1.0f, 1.0f);
    for (size_t i = 0; i < vox; i++) vols[2 * vox + i] = 0.75f; /* volume 2 is flat */
    for (size_t i = 0; i < vox; i++) {
        int z = (int)(i / (17 * 11)), y = (int)(i / 11 % 17), x = (int)(i % 11);
        vols[4 * vox + i] *= z >= 3 && z < 10 && y >= 4 && y < 13 && x >= 3 && x < 8 ? 100.0f : 1e-3f;
    }
    const int cut[3] = {5, 4, 6}, from[3] = {6, 9, 2};
    float *tmpl = malloc(vox * sizeof *tmpl), *rnd = test_random(vox, 54, 0.0f, 1.0f);
    for (int z = 0; z < cut[0]; z++)
        for (int y = 0; y < cut[1]; y++)
            for (int x = 0; x < cut[2]; x++)
                tmpl[(z * cut[1] + y) * cut[2] + x] =
                    vols[vox + ((size_t)(from[0] + z) * 17 + from[1] + y) * 11 + from[2] + x];
    struct {
        const float *t;
        int tdims[3];
        const char *what;
    } cases[] = {{tmpl, {5, 4, 6}, "a box of volume 1"}, {rnd, {3, 7, 5}, "random"}, {rnd, {13, 17, 11}, "the whole grid"}};
    nfv_ncc_bank *bank = NULL;
    if (!CHECK_OK(nfv_ncc_bank_create(vols, N, dims, &bank))) goto done;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        double best[N], worst = 0;
        int at = -1;
        if (!CHECK_OK(nfv_ncc_bank_search(bank, cases[k].t, cases[k].tdims, best))) continue;
        for (int i = 0; i < N - 1; i++) { /* volume 4: see below */
            nfv_ncc_result r;
            if (!CHECK_OK(nfv_ncc_search(vols + (size_t)i * vox, dims, NULL, cases[k].t, cases[k].tdims, &r))) continue;
            if (fabs(best[i] - r.score) > worst) worst = fabs(best[i] - r.score), at = i;
        }
        CHECK(worst <= 1e-4, "%s: worst |FFT - direct| %.3g at volume %d (tolerance 1e-4 absolute)", cases[k].what,
              worst, at);
        double top = -2;
        for (int i = 0; i < N; i++) top = fmax(top, best[i]);
        CHECK(top <= 1.0 + 1e-4, "%s: no NCC above 1 (%.6f)", cases[k].what, top);
        if (k == 0)
            CHECK(fabs(best[1] - 1.0) < 1e-4 && best[2] == 0.0, "own volume %.6f (want 1), flat volume %g (want 0)",
                  best[1], best[2]);
    }
    double best[N];
    const int too_big[3] = {14, 1, 1};
    CHECK(nfv_ncc_bank_search(bank, rnd, too_big, best) == NFV_ERR_INVALID_ARG, "a template larger than the grid is refused");
done:
    nfv_ncc_bank_free(bank);
    free(vols);
    free(tmpl);
    free(rnd);
}
