/* nfv_parallel_for: a shared next-index counter under a mutex, workers that
 * take items until none is left or one failed.  Error messages are
 * thread-local (status.c), so a worker copies its failure's message out and
 * the calling thread raises it again. */
#include "base/parallel.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

typedef struct pool {
    pthread_mutex_t mu;
    nfv_parallel_fn fn;
    void *ctx;
    int n, next;
    int failed_index; /* lowest failed index, n when none */
    nfv_status status;
    char message[1024];
} pool;

static void *work(void *p)
{
    pool *pl = p;
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        int i = pl->failed_index < pl->n ? pl->n : pl->next++;
        pthread_mutex_unlock(&pl->mu);
        if (i >= pl->n) return NULL;
        nfv_status s = pl->fn(pl->ctx, i);
        if (s == NFV_OK) continue;
        pthread_mutex_lock(&pl->mu);
        if (i < pl->failed_index) {
            pl->failed_index = i;
            pl->status = s;
            snprintf(pl->message, sizeof pl->message, "%s", nfv_error_message());
        }
        pthread_mutex_unlock(&pl->mu);
    }
}

nfv_status nfv_parallel_for(int n, int threads, nfv_parallel_fn fn, void *ctx)
{
    if (n <= 0) return NFV_OK;
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads > n) threads = n;
    if (threads > 64) threads = 64;
    pool pl = {.fn = fn, .ctx = ctx, .n = n, .failed_index = n, .status = NFV_OK};
    pthread_mutex_init(&pl.mu, NULL);
    pthread_t tid[64];
    int started = 0;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tid[started], NULL, work, &pl) == 0) started++;
    work(&pl); /* the calling thread works too; with no thread started, it does all */
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&pl.mu);
    return pl.status == NFV_OK ? NFV_OK : nfv_fail(pl.status, "%s", pl.message);
}
