/* The one-process side of data parallelism (include/neurofv/dist.h): blocks
 * partition the items in order, dropout at an element offset draws the
 * whole batch's mask for those elements, synchronized BatchNorm without a
 * split is plain BatchNorm bit for bit, --shard auto reads Slurm's array
 * variables.  The several-rank side (2 ranks = 1 rank) is make test-mpi. */
#include <stdlib.h>
#include <string.h>

#include "neurofv/dist.h"
#include "neurofv/ops.h"
#include "neurofv/vis.h"
#include "test.h"

TEST(dist_blocks_partition_items_in_order)
{
    for (int size = 1; size <= 7; size++)
        for (int total = 0; total <= 23; total++) {
            int next = 0, ok = 1, lo = total, hi = 0;
            for (int r = 0; r < size; r++) {
                int first, count;
                nfv_dist_block(total, r, size, &first, &count);
                ok &= first == next && count >= 0;
                next = first + count;
                lo = count < lo ? count : lo, hi = count > hi ? count : hi;
            }
            CHECK(ok && next == total && hi - lo <= 1, "blocks of %d items over %d ranks: contiguous, all, sizes within 1",
                  total, size);
        }
    nfv_dist_batch b = nfv_dist_batch_of(6);
    CHECK(b.size == 1 && b.rank == 0 && b.offset == 0 && b.count == 6 && nfv_dist_batch_count(&b, 0) == 6,
          "one process holds the whole batch");
    float v[3] = {1, 2, 3};
    CHECK_OK(nfv_dist_sum_floats(v, 3));
    CHECK(v[0] == 1 && v[1] == 2 && v[2] == 3, "a sum over one rank leaves the values");
}

TEST(dist_dropout_at_offset_is_the_batch_mask)
{
    nfv_context *ctx = test_ctx();
    const int whole[5] = {4, 3, 5, 6, 7}, part[5] = {2, 3, 5, 6, 7};
    size_t n = nfv_shape_numel(5, whole), half = n / 2;
    float *hx = test_random(n, 11, -1.0f, 1.0f);
    nfv_tensor x, y, m, xp, yp, mp;
    if (!CHECK_OK(test_tensor(&x, 5, whole, hx)) || !CHECK_OK(test_tensor(&y, 5, whole, NULL)) ||
        !CHECK_OK(test_tensor(&m, 5, whole, NULL)) || !CHECK_OK(test_tensor(&xp, 5, part, hx + half)) ||
        !CHECK_OK(test_tensor(&yp, 5, part, NULL)) || !CHECK_OK(test_tensor(&mp, 5, part, NULL))) {
        free(hx);
        return;
    }
    CHECK_OK(nfv_dropout_forward(ctx, 0.4f, 77, &x, &y, &m));
    CHECK_OK(nfv_dropout_forward_at(ctx, 0.4f, 77, half, &xp, &yp, &mp));
    float *mask = test_download(&m), *mask_part = test_download(&mp);
    CHECK(mask && mask_part && memcmp(mask + half, mask_part, half * sizeof(float)) == 0,
          "samples 2-3 dropped at element offset %zu get the whole batch's mask for them", half);
    CHECK_OK(nfv_dropout_forward_at(ctx, 0.4f, 77, 0, &xp, &yp, &mp));
    float *mask_zero = test_download(&mp);
    CHECK(mask && mask_zero && memcmp(mask, mask_zero, half * sizeof(float)) == 0, "offset 0: the batch's first samples");
    free(mask), free(mask_part), free(mask_zero), free(hx);
    nfv_tensor_free(&x), nfv_tensor_free(&y), nfv_tensor_free(&m);
    nfv_tensor_free(&xp), nfv_tensor_free(&yp), nfv_tensor_free(&mp);
}

TEST(dist_batchnorm_one_rank_is_plain_batchnorm)
{
    nfv_context *ctx = test_ctx();
    const int shape[5] = {3, 4, 6, 5, 7}, ch[1] = {4};
    size_t n = nfv_shape_numel(5, shape);
    float *hx = test_random(n, 5, -2.0f, 3.0f), *hg = test_random(4, 6, 0.5f, 1.5f), *hb = test_random(4, 7, -1, 1);
    float *hdy = test_random(n, 8, -1.0f, 1.0f);
    nfv_tensor x, g, b, y1, y2, m1, s1, m2, s2, dy, dx1, dx2, dg1, dg2, db1, db2;
    int ok = CHECK_OK(test_tensor(&x, 5, shape, hx)) && CHECK_OK(test_tensor(&g, 1, ch, hg)) &&
             CHECK_OK(test_tensor(&b, 1, ch, hb)) && CHECK_OK(test_tensor(&dy, 5, shape, hdy));
    nfv_tensor *outs[] = {&y1, &y2, &dx1, &dx2}, *chans[] = {&m1, &s1, &m2, &s2, &dg1, &dg2, &db1, &db2};
    for (int i = 0; ok && i < 4; i++) ok = CHECK_OK(test_tensor(outs[i], 5, shape, NULL));
    for (int i = 0; ok && i < 8; i++) ok = CHECK_OK(test_tensor(chans[i], 1, ch, NULL));
    nfv_dist_batch one = nfv_dist_batch_of(3);
    if (ok) {
        CHECK_OK(nfv_batchnorm3d_forward_train(ctx, &x, &g, &b, NULL, NULL, 0.1f, 1e-5f, &y1, &m1, &s1));
        CHECK_OK(nfv_batchnorm3d_forward_train_dist(ctx, &x, &g, &b, NULL, NULL, 0.1f, 1e-5f, &y2, &m2, &s2, &one));
        CHECK_OK(nfv_batchnorm3d_backward_train(ctx, &x, &dy, &g, &m1, &s1, &dx1, &dg1, &db1));
        CHECK_OK(nfv_batchnorm3d_backward_train_dist(ctx, &x, &dy, &g, &m2, &s2, &dx2, &dg2, &db2, &one));
        float *a = test_download(&y1), *c = test_download(&y2), *da = test_download(&dx1), *dc = test_download(&dx2);
        CHECK(a && c && memcmp(a, c, n * sizeof(float)) == 0, "forward: same bytes");
        CHECK(da && dc && memcmp(da, dc, n * sizeof(float)) == 0, "backward dx: same bytes");
        free(a), free(c), free(da), free(dc);
        nfv_dist_batch wrong = one;
        wrong.size = 2, wrong.count = 2; /* claims 2 of this rank's 3 samples */
        CHECK(nfv_batchnorm3d_forward_train_dist(ctx, &x, &g, &b, NULL, NULL, 0.1f, 1e-5f, &y2, &m2, &s2, &wrong) ==
                  NFV_ERR_INVALID_ARG,
              "a split that does not match the input is refused");
    }
    nfv_tensor *all[] = {&x, &g, &b, &dy, &y1, &y2, &dx1, &dx2, &m1, &s1, &m2, &s2, &dg1, &dg2, &db1, &db2};
    for (int i = 0; i < 16; i++) nfv_tensor_free(all[i]);
    free(hx), free(hg), free(hb), free(hdy);
}

TEST(dist_shard_auto_reads_slurm_array)
{
    int i = 0, n = 0;
    setenv("SLURM_ARRAY_TASK_ID", "12", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "10", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "13", 1);
    unsetenv("SLURM_ARRAY_TASK_COUNT");
    CHECK(nfv_shard_parse("auto", &i, &n) == NFV_OK && i == 3 && n == 4, "task 12 of 10-13 is shard 3/4 (got %d/%d)", i, n);
    setenv("SLURM_ARRAY_TASK_COUNT", "5", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "14", 1);
    CHECK(nfv_shard_parse("auto", &i, &n) == NFV_OK && i == 3 && n == 5, "COUNT wins: shard 3/5 (got %d/%d)", i, n);
    setenv("SLURM_ARRAY_TASK_ID", "9", 1);
    CHECK(nfv_shard_parse("auto", &i, &n) == NFV_ERR_INVALID_ARG, "a task below MIN is refused");
    unsetenv("SLURM_ARRAY_TASK_ID");
    CHECK(nfv_shard_parse("auto", &i, &n) == NFV_ERR_INVALID_ARG &&
              strstr(nfv_error_message(), "SLURM_ARRAY_TASK_ID") != NULL,
          "outside an array: refused, naming SLURM_ARRAY_TASK_ID");
    unsetenv("SLURM_ARRAY_TASK_MIN"), unsetenv("SLURM_ARRAY_TASK_MAX"), unsetenv("SLURM_ARRAY_TASK_COUNT");
}
