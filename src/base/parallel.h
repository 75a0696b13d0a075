/* Independent items of host work (writing one target's files, say) on
 * several threads. */
#ifndef NEUROFV_BASE_PARALLEL_H
#define NEUROFV_BASE_PARALLEL_H

#include "neurofv/status.h"

/* One item: called once per index, on any of the threads, items of one call
 * in any order and at once, so it may touch only what is index's own. */
typedef nfv_status (*nfv_parallel_fn)(void *ctx, int index);

/* Runs fn(ctx, i) for every i in [0, n) on up to `threads` threads, the
 * calling thread among them (threads <= 0: one per online core; never more
 * than n).  Items start in index order.  After a failure no further item
 * starts; the call returns the failure of the lowest index that failed, with
 * its message, on the calling thread (NFV_OK when all succeeded). */
nfv_status nfv_parallel_for(int n, int threads, nfv_parallel_fn fn, void *ctx);

#endif
