/* Linear (dense) layer: forward and backward through CLBlast's SGEMM, with
 * the bias add and bias-gradient reduction as small kernels (cl/dense.cl).
 *
 * Layout (row-major, as PyTorch's nn.Linear):
 *   x  (N, In)   w (Out, In)   b (Out)   y (N, Out)
 *   y  = x w^T + b              GEMM  M=N   N=Out K=In   (A no-trans, B trans)
 *   dx = dy w                   GEMM  M=N   N=In  K=Out  (no-trans, no-trans)
 *   dw = dy^T x                 GEMM  M=Out N=In  K=N    (A trans, B no-trans)
 *   db = sum over N of dy       reduction kernel
 *
 * Small batches (N <= LINEAR_DIRECT_MAX_BATCH, the usual case: training
 * batches of a few volumes, visualization at batch 1) go to direct kernels
 * instead: these products are matrix-vector shaped and memory-bound, and
 * CLBlast pads them to its 64-row tiles (on PoCL 4x6144 -> 100 took 11 ms
 * forward through CLBlast).  NEUROFV_LINEAR=clblast or =direct forces one
 * path (tests cover both; useful to compare on a new device). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ops.h first: it pins CL_TARGET_OPENCL_VERSION before any CL header. */
#include "neurofv/ops.h"

#include <clblast_c.h>

/* Largest batch that takes the direct kernels by default. */
#define LINEAR_DIRECT_MAX_BATCH 16
/* Upper bound on the forward kernel's work-group size (a power of two). */
#define LINEAR_GROUP_MAX 64

static int use_direct(int batch)
{
    const char *force = getenv("NEUROFV_LINEAR");
    if (force && !strcmp(force, "clblast")) return 0;
    if (force && !strcmp(force, "direct")) return 1;
    return batch <= LINEAR_DIRECT_MAX_BATCH;
}

/* The vector width cl/dense.cl is built with: the device's, if it is one
 * the kernels support. */
static int dense_vec(nfv_context *ctx)
{
    int vec = nfv_context_vector_width(ctx);
    return (vec == 2 || vec == 4 || vec == 8 || vec == 16) ? vec : 4;
}

static nfv_status dense_kernel(nfv_context *ctx, const char *name, cl_kernel *k)
{
    char options[32];
    snprintf(options, sizeof options, "-DVEC=%d", dense_vec(ctx));
    return nfv_kernel_get(ctx, "dense", options, name, k);
}

static nfv_status direct_forward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *w, const nfv_tensor *b,
                                 nfv_tensor *y, int batch, int in_f, int out_f)
{
    cl_kernel k;
    const char *kn = "dense_forward_small_batch";
    NFV_TRY(dense_kernel(ctx, kn, &k));
    const int has_bias = b != NULL;
    cl_mem bias = has_bias ? b->buf : w->buf; /* never read without bias */
    size_t limit = nfv_kernel_max_local(ctx, k), local = 1;
    if (limit > LINEAR_GROUP_MAX) limit = LINEAR_GROUP_MAX;
    while (local * 2 <= limit) local *= 2; /* the tree reduction needs a power of two */
    NFV_ARG(k, kn, 0, x->buf);
    NFV_ARG(k, kn, 1, w->buf);
    NFV_ARG(k, kn, 2, bias);
    NFV_ARG(k, kn, 3, has_bias);
    NFV_ARG(k, kn, 4, y->buf);
    NFV_ARG(k, kn, 5, batch);
    NFV_ARG(k, kn, 6, in_f);
    NFV_ARG(k, kn, 7, out_f);
    NFV_CL_CHECK(clSetKernelArg(k, 8, local * sizeof(float), NULL), "clSetKernelArg", kn);
    size_t global = (size_t)out_f * local;
    return nfv_kernel_launch(ctx, k, 1, &global, &local);
}

static const char *clblast_status_name(CLBlastStatusCode s)
{
    switch (s) {
    case CLBlastSuccess: return "CLBlastSuccess";
    case CLBlastOpenCLCompilerNotAvailable: return "CLBlastOpenCLCompilerNotAvailable";
    case CLBlastTempBufferAllocFailure: return "CLBlastTempBufferAllocFailure";
    case CLBlastOpenCLOutOfResources: return "CLBlastOpenCLOutOfResources";
    case CLBlastOpenCLOutOfHostMemory: return "CLBlastOpenCLOutOfHostMemory";
    case CLBlastOpenCLBuildProgramFailure: return "CLBlastOpenCLBuildProgramFailure";
    case CLBlastInvalidValue: return "CLBlastInvalidValue";
    case CLBlastInvalidCommandQueue: return "CLBlastInvalidCommandQueue";
    case CLBlastInvalidMemObject: return "CLBlastInvalidMemObject";
    case CLBlastInvalidBinary: return "CLBlastInvalidBinary";
    case CLBlastInvalidBuildOptions: return "CLBlastInvalidBuildOptions";
    case CLBlastInvalidProgram: return "CLBlastInvalidProgram";
    case CLBlastInvalidProgramExecutable: return "CLBlastInvalidProgramExecutable";
    case CLBlastInvalidKernelName: return "CLBlastInvalidKernelName";
    case CLBlastInvalidKernelDefinition: return "CLBlastInvalidKernelDefinition";
    case CLBlastInvalidKernel: return "CLBlastInvalidKernel";
    case CLBlastInvalidArgIndex: return "CLBlastInvalidArgIndex";
    case CLBlastInvalidArgValue: return "CLBlastInvalidArgValue";
    case CLBlastInvalidArgSize: return "CLBlastInvalidArgSize";
    case CLBlastInvalidKernelArgs: return "CLBlastInvalidKernelArgs";
    case CLBlastInvalidLocalNumDimensions: return "CLBlastInvalidLocalNumDimensions";
    case CLBlastInvalidLocalThreadsTotal: return "CLBlastInvalidLocalThreadsTotal";
    case CLBlastInvalidLocalThreadsDim: return "CLBlastInvalidLocalThreadsDim";
    case CLBlastInvalidGlobalOffset: return "CLBlastInvalidGlobalOffset";
    case CLBlastInvalidEventWaitList: return "CLBlastInvalidEventWaitList";
    case CLBlastInvalidEvent: return "CLBlastInvalidEvent";
    case CLBlastInvalidOperation: return "CLBlastInvalidOperation";
    case CLBlastInvalidBufferSize: return "CLBlastInvalidBufferSize";
    case CLBlastInvalidGlobalWorkSize: return "CLBlastInvalidGlobalWorkSize";
    case CLBlastNotImplemented: return "CLBlastNotImplemented";
    case CLBlastInvalidMatrixA: return "CLBlastInvalidMatrixA";
    case CLBlastInvalidMatrixB: return "CLBlastInvalidMatrixB";
    case CLBlastInvalidMatrixC: return "CLBlastInvalidMatrixC";
    case CLBlastInvalidDimension: return "CLBlastInvalidDimension";
    case CLBlastInvalidLeadDimA: return "CLBlastInvalidLeadDimA";
    case CLBlastInvalidLeadDimB: return "CLBlastInvalidLeadDimB";
    case CLBlastInvalidLeadDimC: return "CLBlastInvalidLeadDimC";
    case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA";
    case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB";
    case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC";
    case CLBlastInsufficientMemoryTemp: return "CLBlastInsufficientMemoryTemp";
    case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
    case CLBlastDatabaseError: return "CLBlastDatabaseError";
    case CLBlastUnknownError: return "CLBlastUnknownError";
    case CLBlastUnexpectedError: return "CLBlastUnexpectedError";
    default: return "unknown CLBlast status";
    }
}

/* Row-major C (m, n) = op(A) op(B), overwriting C.  `what` names the product
 * in messages ("linear forward y = x w^T"). */
static nfv_status sgemm(nfv_context *ctx, const char *what, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                        cl_mem a, size_t lda, cl_mem b, size_t ldb, cl_mem c, size_t ldc)
{
    cl_command_queue queue = nfv_context_queue(ctx);
    CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                                       trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, 1.0f, a, 0, lda,
                                       b, 0, ldb, 0.0f, c, 0, ldc, &queue, NULL);
    if (s != CLBlastSuccess)
        return nfv_fail(NFV_ERR_OPENCL, "CLBlastSgemm(%s: m=%zu n=%zu k=%zu, transA=%d transB=%d) on %s: %s (%d)",
                        what, m, n, k, trans_a, trans_b, nfv_context_device_info(ctx)->name,
                        clblast_status_name(s), (int)s);
    return NFV_OK;
}

/* A shape mismatch message naming the op, the argument and both shapes. */
static nfv_status shape_fail(const char *op, const char *arg, const nfv_tensor *t, const char *want)
{
    char got[64];
    return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s", op, arg,
                    t ? nfv_shape_str(t, got, sizeof got) : "(null)", want);
}

static int is_matrix(const nfv_tensor *t, int rows, int cols)
{
    return t && t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols;
}

static int is_vector(const nfv_tensor *t, int len)
{
    return t && t->ndim == 1 && t->shape[0] == len;
}

nfv_status nfv_linear_forward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *w, const nfv_tensor *b,
                              nfv_tensor *y)
{
    static const char *op = "linear forward";
    if (!w || w->ndim != 2) return shape_fail(op, "w", w, "(Out, In)");
    const int out_f = w->shape[0], in_f = w->shape[1];
    char want[64];
    if (!x || x->ndim != 2 || x->shape[1] != in_f) {
        snprintf(want, sizeof want, "(N, %d)", in_f);
        return shape_fail(op, "x", x, want);
    }
    const int batch = x->shape[0];
    snprintf(want, sizeof want, "(%d, %d)", batch, out_f);
    if (!is_matrix(y, batch, out_f)) return shape_fail(op, "y", y, want);
    snprintf(want, sizeof want, "(%d)", out_f);
    if (b && !is_vector(b, out_f)) return shape_fail(op, "b", b, want);

    if (use_direct(batch)) return direct_forward(ctx, x, w, b, y, batch, in_f, out_f);
    NFV_TRY(sgemm(ctx, "linear forward y = x w^T", 0, 1, (size_t)batch, (size_t)out_f, (size_t)in_f, x->buf,
                  (size_t)in_f, w->buf, (size_t)in_f, y->buf, (size_t)out_f));
    if (b) {
        cl_kernel k;
        NFV_TRY(dense_kernel(ctx, "dense_bias_add", &k));
        NFV_ARG(k, "dense_bias_add", 0, y->buf);
        NFV_ARG(k, "dense_bias_add", 1, b->buf);
        NFV_ARG(k, "dense_bias_add", 2, out_f);
        size_t global = (size_t)batch * (size_t)out_f;
        NFV_TRY(nfv_kernel_launch(ctx, k, 1, &global, NULL));
    }
    return NFV_OK;
}

nfv_status nfv_linear_backward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *w, const nfv_tensor *dy,
                               nfv_tensor *dx, nfv_tensor *dw, nfv_tensor *db)
{
    static const char *op = "linear backward";
    if (!w || w->ndim != 2) return shape_fail(op, "w", w, "(Out, In)");
    const int out_f = w->shape[0], in_f = w->shape[1];
    char want[64];
    if (!dy || dy->ndim != 2 || dy->shape[1] != out_f) {
        snprintf(want, sizeof want, "(N, %d)", out_f);
        return shape_fail(op, "dy", dy, want);
    }
    const int batch = dy->shape[0];
    snprintf(want, sizeof want, "(%d, %d)", batch, in_f);
    /* x is only read for dw, but when given it must match. */
    if ((dw || x) && !is_matrix(x, batch, in_f)) return shape_fail(op, "x", x, want);
    if (dx && !is_matrix(dx, batch, in_f)) return shape_fail(op, "dx", dx, want);
    snprintf(want, sizeof want, "(%d, %d)", out_f, in_f);
    if (dw && !is_matrix(dw, out_f, in_f)) return shape_fail(op, "dw", dw, want);
    snprintf(want, sizeof want, "(%d)", out_f);
    if (db && !is_vector(db, out_f)) return shape_fail(op, "db", db, want);

    const int direct = use_direct(batch);
    const int vec = dense_vec(ctx);
    const size_t chunks = ((size_t)in_f + (size_t)vec - 1) / (size_t)vec; /* VEC-wide column chunks */
    cl_kernel k;
    if (dx && direct) {
        const char *kn = "dense_backward_input_small_batch";
        NFV_TRY(dense_kernel(ctx, kn, &k));
        NFV_ARG(k, kn, 0, dy->buf);
        NFV_ARG(k, kn, 1, w->buf);
        NFV_ARG(k, kn, 2, dx->buf);
        NFV_ARG(k, kn, 3, in_f);
        NFV_ARG(k, kn, 4, out_f);
        size_t global[2] = {chunks, (size_t)batch};
        NFV_TRY(nfv_kernel_launch(ctx, k, 2, global, NULL));
    } else if (dx)
        NFV_TRY(sgemm(ctx, "linear backward dx = dy w", 0, 0, (size_t)batch, (size_t)in_f, (size_t)out_f, dy->buf,
                      (size_t)out_f, w->buf, (size_t)in_f, dx->buf, (size_t)in_f));
    if (dw && direct) {
        const char *kn = "dense_backward_weights_small_batch";
        NFV_TRY(dense_kernel(ctx, kn, &k));
        NFV_ARG(k, kn, 0, x->buf);
        NFV_ARG(k, kn, 1, dy->buf);
        NFV_ARG(k, kn, 2, dw->buf);
        NFV_ARG(k, kn, 3, batch);
        NFV_ARG(k, kn, 4, in_f);
        NFV_ARG(k, kn, 5, out_f);
        size_t global[2] = {chunks, (size_t)out_f};
        NFV_TRY(nfv_kernel_launch(ctx, k, 2, global, NULL));
    } else if (dw)
        NFV_TRY(sgemm(ctx, "linear backward dw = dy^T x", 1, 0, (size_t)out_f, (size_t)in_f, (size_t)batch,
                      dy->buf, (size_t)out_f, x->buf, (size_t)in_f, dw->buf, (size_t)in_f));
    if (db) {
        NFV_TRY(dense_kernel(ctx, "dense_bias_grad", &k));
        NFV_ARG(k, "dense_bias_grad", 0, dy->buf);
        NFV_ARG(k, "dense_bias_grad", 1, db->buf);
        NFV_ARG(k, "dense_bias_grad", 2, batch);
        NFV_ARG(k, "dense_bias_grad", 3, out_f);
        size_t global = (size_t)out_f;
        NFV_TRY(nfv_kernel_launch(ctx, k, 1, &global, NULL));
    }
    return NFV_OK;
}
