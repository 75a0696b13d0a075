/* Kernel profiling: with NEUROFV_PROFILE=1 at context creation the queue is
 * created with CL_QUEUE_PROFILING_ENABLE and every nfv_kernel_launch keeps
 * its event and waits for it (each kernel runs alone, so its time is its
 * own); nfv_profile_collect waits for the queue and sums each kernel's
 * device time (CL_PROFILING_COMMAND_START..END) by kernel name, or with
 * NEUROFV_PROFILE=shapes by kernel name and the layer shape its build was
 * compiled for (the conv programs' -DCI, -DCO, -DDO/HO/WO and -DKD).  Launches
 * that do not go through nfv_kernel_launch (CLBlast's dense layers, buffer
 * copies, reads) are not counted: the caller compares the sum with wall
 * time.  Off, it costs one pointer test per launch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

#define PROFILE_MAX_PENDING 65536

struct nfv_profile_state {
    int shapes;              /* NEUROFV_PROFILE=shapes: rows per kernel and build shape */
    cl_event *ev;            /* pending events, ev_kernel[i] their row */
    int *ev_row;
    int pending;
    nfv_profile_row *rows;   /* accumulated per kernel name */
    int nrows, cap;
};

int nfv_profile_wanted(void)
{
    const char *p = getenv("NEUROFV_PROFILE");
    return p && p[0] && strcmp(p, "0") != 0;
}

nfv_status nfv_profile_init(nfv_context *ctx)
{
    ctx->profile = calloc(1, sizeof *ctx->profile);
    if (ctx->profile) {
        ctx->profile->ev = malloc(PROFILE_MAX_PENDING * sizeof *ctx->profile->ev);
        ctx->profile->ev_row = malloc(PROFILE_MAX_PENDING * sizeof *ctx->profile->ev_row);
    }
    if (!ctx->profile || !ctx->profile->ev || !ctx->profile->ev_row)
        return nfv_fail(NFV_ERR_NO_MEMORY, "kernel profiling: out of memory");
    const char *mode = getenv("NEUROFV_PROFILE");
    ctx->profile->shapes = mode && !strcmp(mode, "shapes");
    return NFV_OK;
}

static int row_of(struct nfv_profile_state *p, const char *name)
{
    for (int i = 0; i < p->nrows; i++)
        if (!strcmp(p->rows[i].name, name)) return i;
    if (p->nrows == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        nfv_profile_row *r = realloc(p->rows, (size_t)cap * sizeof *r);
        if (!r) return -1;
        p->rows = r, p->cap = cap;
    }
    nfv_profile_row *r = &p->rows[p->nrows];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    return p->nrows++;
}

/* Waits for the queue and moves every pending event's time into its row. */
static void resolve(nfv_context *ctx)
{
    struct nfv_profile_state *p = ctx->profile;
    if (!p->pending) return;
    clFinish(ctx->queue);
    for (int i = 0; i < p->pending; i++) {
        cl_ulong t0 = 0, t1 = 0;
        if (clGetEventProfilingInfo(p->ev[i], CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
            clGetEventProfilingInfo(p->ev[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS &&
            p->ev_row[i] >= 0 && t1 >= t0) {
            p->rows[p->ev_row[i]].seconds += 1e-9 * (double)(t1 - t0);
            p->rows[p->ev_row[i]].launches++;
        }
        clReleaseEvent(p->ev[i]);
    }
    p->pending = 0;
}

/* The value of -D<key>=N in a build's options, or -1. */
static int build_define(const char *opts, const char *key)
{
    char pat[16];
    snprintf(pat, sizeof pat, "-D%s=", key);
    const char *p = strstr(opts, pat);
    return p ? atoi(p + strlen(pat)) : -1;
}

/* " ci64 co8 35x35x35 k4": the shape a conv build was compiled for, or
 * " 91x109x91" a pool build's input grid, after name (capacity cap);
 * nothing for builds without one. */
static void append_shape(nfv_context *ctx, cl_kernel kernel, char *name, size_t cap)
{
    cl_program prog;
    char opts[1024] = "";
    if (clGetKernelInfo(kernel, CL_KERNEL_PROGRAM, sizeof prog, &prog, NULL) != CL_SUCCESS ||
        clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_OPTIONS, sizeof opts, opts, NULL) != CL_SUCCESS)
        return;
    opts[sizeof opts - 1] = '\0';
    const int ci = build_define(opts, "CI"), co = build_define(opts, "CO");
    size_t used = strlen(name);
    if ((ci < 0 || co < 0) && build_define(opts, "OD") > 0) { /* a pool build: its input grid */
        snprintf(name + used, cap - used, " %dx%dx%d", build_define(opts, "D"), build_define(opts, "H"),
                 build_define(opts, "W"));
        return;
    }
    if (ci < 0 || co < 0) return;
    snprintf(name + used, cap - used, " ci%d co%d %dx%dx%d k%d", ci, co, build_define(opts, "DO"),
             build_define(opts, "HO"), build_define(opts, "WO"), build_define(opts, "KD"));
}

cl_event *nfv_profile_slot(nfv_context *ctx, cl_kernel kernel)
{
    struct nfv_profile_state *p = ctx->profile;
    if (p->pending == PROFILE_MAX_PENDING) resolve(ctx);
    char name[sizeof p->rows->name] = "?";
    clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    name[sizeof name - 1] = '\0';
    if (p->shapes) append_shape(ctx, kernel, name, sizeof name);
    p->ev_row[p->pending] = row_of(p, name);
    return &p->ev[p->pending];
}

void nfv_profile_launched(nfv_context *ctx) { ctx->profile->pending++; }

int nfv_profile_collect(nfv_context *ctx, nfv_profile_row **rows, int reset)
{
    *rows = NULL;
    if (!ctx->profile) return -1;
    resolve(ctx);
    struct nfv_profile_state *p = ctx->profile;
    int n = p->nrows;
    if (n) {
        *rows = malloc((size_t)n * sizeof **rows);
        if (*rows) memcpy(*rows, p->rows, (size_t)n * sizeof **rows);
        else n = 0;
    }
    if (reset) p->nrows = 0;
    return n;
}

void nfv_profile_release(nfv_context *ctx)
{
    if (!ctx->profile) return;
    resolve(ctx);
    free(ctx->profile->ev);
    free(ctx->profile->ev_row);
    free(ctx->profile->rows);
    free(ctx->profile);
    ctx->profile = NULL;
}
