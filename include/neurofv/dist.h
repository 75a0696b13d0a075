/* Several processes working as one: the data-parallel and work-splitting
 * primitives of neurofv, on Open MPI (Debian libopenmpi-dev) when built with
 * `make MPI=1`, and the one-process case otherwise.
 *
 * neurofv writes no communication of its own: every call below is one MPI
 * collective on MPI_COMM_WORLD.  Built without MPI (the default binary, no
 * MPI dependency) the world is one rank, collectives are copies, and the
 * distributed commands behave exactly as before.
 *
 * Who does what:
 *   - nfv_dist_init / nfv_dist_finalize: the CLI's main, once.
 *   - Items (subjects of a batch, validation rows, targets, compare runs) are
 *     split in contiguous blocks by nfv_dist_block, so every rank knows every
 *     rank's share without asking, and the blocks concatenated in rank order
 *     are the items in their one-process order.
 *   - A failing rank calls nfv_dist_abort with its message: every rank stops
 *     (MPI_Abort), none waits forever in a collective. */
#ifndef NEUROFV_DIST_H
#define NEUROFV_DIST_H

#include <stddef.h>

#include "neurofv/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* MPI_Init (threads: funneled; only the main thread calls MPI).  Harmless
 * without MPI.  Safe to call once; later calls do nothing. */
nfv_status nfv_dist_init(int *argc, char ***argv);
/* MPI_Finalize after a barrier; nothing without MPI or when not initialized. */
void nfv_dist_finalize(void);

/* 1 when the binary was built with MPI=1. */
int nfv_dist_built_with_mpi(void);
/* This process's rank in the world and the world's size (0 and 1 without MPI
 * or before nfv_dist_init); the rank on this node and the ranks on this node
 * (MPI_COMM_TYPE_SHARED), which pick the node's devices. */
int nfv_dist_rank(void);
int nfv_dist_size(void);
int nfv_dist_local_rank(void);
int nfv_dist_local_size(void);

/* The contiguous block of `total` items that `rank` of `size` takes:
 * [total * rank / size, total * (rank + 1) / size). */
void nfv_dist_block(int total, int rank, int size, int *first, int *count);

/* In-place sums over ranks: every rank ends with the same n values.  Floats
 * are summed in double and rounded once, so the result does not depend on
 * MPI's reduction order. */
nfv_status nfv_dist_sum_floats(float *values, size_t n);
nfv_status nfv_dist_sum_doubles(double *values, size_t n);
/* Concatenates each rank's block: rank r contributes counts[r] floats (its
 * own: mine, counts[rank] of them); all receives sum(counts) floats in rank
 * order on every rank. */
nfv_status nfv_dist_gather_floats(const float *mine, const int *counts, float *all);
/* Rank 0's n bytes to every rank. */
nfv_status nfv_dist_broadcast(void *data, size_t n);
/* Waits until every rank is here. */
nfv_status nfv_dist_barrier(void);
/* 1 on every rank when any rank passes a non-zero `failed`, else 0: lets
 * ranks agree to stop at a safe point together. */
int nfv_dist_any_failed(int failed);

/* Stops every rank: prints "neurofv: rank R of N: MESSAGE" and calls
 * MPI_Abort with code.  Without MPI (or one rank) it only returns code. */
int nfv_dist_abort(int code, const char *message);

/* How a training batch of `total` samples is split over the world: this
 * rank's samples are [offset, offset + count) of it (nfv_dist_block).  Given
 * to the layers that reduce over the batch (BatchNorm's statistics) and the
 * loss, so N ranks compute the step one process computes on the whole batch. */
typedef struct nfv_dist_batch {
    int total, offset, count; /* global batch, this rank's first sample and sample count */
    int rank, size;
} nfv_dist_batch;
/* The split of a global batch of `total` for this process. */
nfv_dist_batch nfv_dist_batch_of(int total);
/* Samples of rank r under split b. */
int nfv_dist_batch_count(const nfv_dist_batch *b, int r);

/* The all-reduce time of n floats between the world's ranks: median of reps
 * calls of nfv_dist_sum_floats, in seconds, on every rank (the cost model's
 * figure in `neurofv bench`). */
nfv_status nfv_dist_time_sum(size_t n, int reps, double *median_seconds);

#ifdef __cplusplus
}
#endif
#endif
