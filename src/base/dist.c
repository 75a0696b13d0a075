/* Data-parallel primitives over MPI_COMM_WORLD (include/neurofv/dist.h).
 * With NFV_WITH_MPI (make MPI=1) each function is one MPI call; without it
 * the world is this process alone. */
#include "neurofv/dist.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef NFV_WITH_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1, g_initialized = 0;

int nfv_dist_built_with_mpi(void)
{
#ifdef NFV_WITH_MPI
    return 1;
#else
    return 0;
#endif
}

int nfv_dist_rank(void) { return g_rank; }
int nfv_dist_size(void) { return g_size; }
int nfv_dist_local_rank(void) { return g_local_rank; }
int nfv_dist_local_size(void) { return g_local_size; }

void nfv_dist_block(int total, int rank, int size, int *first, int *count)
{
    if (size < 1) size = 1;
    long long a = (long long)total * rank / size, b = (long long)total * (rank + 1) / size;
    *first = (int)a;
    *count = (int)(b - a);
}

nfv_dist_batch nfv_dist_batch_of(int total)
{
    nfv_dist_batch b = {.total = total, .rank = g_rank, .size = g_size};
    nfv_dist_block(total, g_rank, g_size, &b.offset, &b.count);
    return b;
}

int nfv_dist_batch_count(const nfv_dist_batch *b, int r)
{
    int first, count;
    nfv_dist_block(b->total, r, b->size, &first, &count);
    return count;
}

#ifdef NFV_WITH_MPI

/* An MPI error as an nfv_status naming the call. */
static nfv_status mpi_fail(int err, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", err);
    return nfv_fail(NFV_ERR_IO, "%s failed on rank %d of %d: %s", call, g_rank, g_size, text);
}
#define MPI_CHECK(call, name)                      \
    do {                                           \
        int mpi_err_ = (call);                     \
        if (mpi_err_ != MPI_SUCCESS) return mpi_fail(mpi_err_, name); \
    } while (0)

nfv_status nfv_dist_init(int *argc, char ***argv)
{
    if (g_initialized) return NFV_OK;
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_initialized = 1;
    /* Errors come back as codes (checked and reported), not as aborts. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank), "MPI_Comm_rank");
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_size), "MPI_Comm_size");
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
    MPI_Comm_rank(node, &g_local_rank);
    MPI_Comm_size(node, &g_local_size);
    MPI_Comm_free(&node);
    return NFV_OK;
}

void nfv_dist_finalize(void)
{
    if (!g_initialized) return;
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    g_initialized = 0;
}

nfv_status nfv_dist_sum_doubles(double *values, size_t n)
{
    if (g_size == 1 || n == 0) return NFV_OK;
    if (n > 0x7fffffff) return nfv_fail(NFV_ERR_INVALID_ARG, "all-reduce of %zu values: too many for one call", n);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    return NFV_OK;
}

nfv_status nfv_dist_sum_floats(float *values, size_t n)
{
    if (g_size == 1 || n == 0) return NFV_OK;
    double *d = malloc(n * sizeof *d);
    if (!d) return nfv_fail(NFV_ERR_NO_MEMORY, "all-reduce of %zu floats: out of memory", n);
    for (size_t i = 0; i < n; i++) d[i] = values[i];
    nfv_status s = nfv_dist_sum_doubles(d, n);
    if (!s)
        for (size_t i = 0; i < n; i++) values[i] = (float)d[i];
    free(d);
    return s;
}

nfv_status nfv_dist_gather_floats(const float *mine, const int *counts, float *all)
{
    if (g_size == 1) {
        if (all != mine && counts[0] > 0) memmove(all, mine, (size_t)counts[0] * sizeof(float));
        return NFV_OK;
    }
    int *displs = malloc((size_t)g_size * sizeof *displs);
    if (!displs) return nfv_fail(NFV_ERR_NO_MEMORY, "all-gather: out of memory");
    long long at = 0;
    for (int r = 0; r < g_size; r++) {
        displs[r] = (int)at;
        at += counts[r];
    }
    nfv_status s = NFV_OK;
    if (at > 0x7fffffff) s = nfv_fail(NFV_ERR_INVALID_ARG, "all-gather of %lld floats: too many for one call", at);
    int err = s ? MPI_SUCCESS
                : MPI_Allgatherv(mine, counts[g_rank], MPI_FLOAT, all, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
    free(displs);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allgatherv");
    return s;
}

nfv_status nfv_dist_broadcast(void *data, size_t n)
{
    if (g_size == 1 || n == 0) return NFV_OK;
    if (n > 0x7fffffff) return nfv_fail(NFV_ERR_INVALID_ARG, "broadcast of %zu bytes: too many for one call", n);
    MPI_CHECK(MPI_Bcast(data, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
    return NFV_OK;
}

nfv_status nfv_dist_barrier(void)
{
    if (g_size == 1) return NFV_OK;
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    return NFV_OK;
}

int nfv_dist_any_failed(int failed)
{
    if (g_size == 1) return failed;
    int any = 0;
    if (MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
    return any;
}

int nfv_dist_abort(int code, const char *message)
{
    if (!g_initialized || g_size == 1) return code;
    fprintf(stderr, "neurofv: rank %d of %d: %s; stopping every rank\n", g_rank, g_size,
            message && message[0] ? message : "failed");
    fflush(stderr);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    return code; /* not reached */
}

#else /* one process */

nfv_status nfv_dist_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    g_initialized = 1;
    return NFV_OK;
}
void nfv_dist_finalize(void) { g_initialized = 0; }
nfv_status nfv_dist_sum_doubles(double *values, size_t n) { (void)values, (void)n; return NFV_OK; }
nfv_status nfv_dist_sum_floats(float *values, size_t n) { (void)values, (void)n; return NFV_OK; }
nfv_status nfv_dist_gather_floats(const float *mine, const int *counts, float *all)
{
    if (all != mine && counts[0] > 0) memmove(all, mine, (size_t)counts[0] * sizeof(float));
    return NFV_OK;
}
nfv_status nfv_dist_broadcast(void *data, size_t n) { (void)data, (void)n; return NFV_OK; }
nfv_status nfv_dist_barrier(void) { return NFV_OK; }
int nfv_dist_any_failed(int failed) { return failed; }
int nfv_dist_abort(int code, const char *message) { (void)message; return code; }

#endif

nfv_status nfv_dist_time_sum(size_t n, int reps, double *median_seconds)
{
    if (reps < 1) reps = 1;
    float *v = calloc(n ? n : 1, sizeof *v);
    double *t = malloc((size_t)reps * sizeof *t);
    nfv_status s = v && t ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "all-reduce timing: out of memory");
    if (!s) s = nfv_dist_sum_floats(v, n); /* warm-up: connections are made on first use */
    for (int i = 0; i < reps && !s; i++) {
        s = nfv_dist_barrier();
        double t0 = nfv_seconds();
        if (!s) s = nfv_dist_sum_floats(v, n);
        t[i] = nfv_seconds() - t0;
    }
    /* Every rank reports rank 0's median: the figures printed agree. */
    double med = 0;
    if (!s) {
        med = nfv_median_sort(t, reps);
        s = nfv_dist_broadcast(&med, sizeof med);
    }
    *median_seconds = med;
    free(v);
    free(t);
    return s;
}
