/* Small kernels around the dense (Linear) layer's GEMMs, which CLBlast does.
 *
 * Shapes: y, dy (N, Out) row-major; b, db (Out).
 * Both kernels are bandwidth-bound and tiny next to the GEMM; one work-item
 * per output element keeps them loop-free where possible so PoCL vectorizes
 * across work-items. */

/* y[n, o] += b[o]; global size N * Out. */
__kernel void dense_bias_add(__global float *y, __global const float *b, int out_features)
{
    size_t i = get_global_id(0);
    y[i] += b[i % (size_t)out_features];
}

/* db[o] = sum over n of dy[n, o]; global size Out.  The loop runs over the
 * batch (small), and consecutive work-items read consecutive addresses. */
__kernel void dense_bias_grad(__global const float *dy, __global float *db, int batch, int out_features)
{
    size_t o = get_global_id(0);
    float acc = 0.0f;
    for (int n = 0; n < batch; n++) acc += dy[(size_t)n * (size_t)out_features + o];
    db[o] = acc;
}

/* ---- Direct kernels for small batches --------------------------------- *
 * With a batch of a few samples the GEMMs are matrix-vector products:
 * memory-bound, and CLBlast's 64-row tile padding makes them 10-100x slower
 * than reading w once (measured on PoCL: 4x6144 -> 100 forward 11 ms).
 * These kernels read each operand once with VEC-wide loads.  Rows are read
 * up to VEC-1 floats past their end: tensors carry 64 floats of slack
 * (src/tensor.c), and the extra lanes are discarded. */

#ifndef VEC
#define VEC 8
#endif
#include "common.cl"

/* Sum over the work-group (power-of-two size), returned to every work-item. */
static float dense_group_sum(float v, __local float *scratch)
{
    const int lid = (int)get_local_id(0), size = (int)get_local_size(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = size / 2; step > 0; step /= 2) {
        if (lid < step) scratch[lid] += scratch[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

/* y[n, o] = sum_j x[n, j] w[o, j] (+ b[o]).  One work-group per output
 * feature o (global = Out * local); its work-items stride over In in
 * VEC-wide chunks, then reduce.  scratch: one float per work-item. */
__kernel void dense_forward_small_batch(__global const float *x, __global const float *w, __global const float *b,
                                        int has_bias, __global float *y, int batch, int in_features,
                                        int out_features, __local float *scratch)
{
    const int o = (int)get_group_id(0), lid = (int)get_local_id(0), size = (int)get_local_size(0);
    const int chunks = (in_features + VEC - 1) / VEC;
    __global const float *wr = w + (size_t)o * (size_t)in_features;
    for (int n = 0; n < batch; n++) {
        __global const float *xr = x + (size_t)n * (size_t)in_features;
        float s = 0.0f;
        for (int t = lid; t < chunks; t += size) {
            floatv prod = VLOAD(t, xr) * VLOAD(t, wr);
            const int valid = in_features - t * VEC;
            if (valid < VEC) { /* last chunk: drop lanes past the row's end */
                float lanes[VEC];
                VSTORE(prod, 0, lanes);
                for (int k = 0; k < valid; k++) s += lanes[k];
            } else {
                s += vsum(prod);
            }
        }
        s = dense_group_sum(s, scratch);
        if (lid == 0) y[(size_t)n * (size_t)out_features + o] = s + (has_bias ? b[o] : 0.0f);
    }
}

/* dx[n, j..j+VEC) = sum_o dy[n, o] w[o, j..j+VEC); global (chunks, N). */
__kernel void dense_backward_input_small_batch(__global const float *dy, __global const float *w, __global float *dx,
                                               int in_features, int out_features)
{
    const int t = (int)get_global_id(0), n = (int)get_global_id(1);
    const int chunks = (in_features + VEC - 1) / VEC;
    if (t >= chunks) return;
    floatv acc = (floatv)(0.0f);
    for (int o = 0; o < out_features; o++)
        acc += dy[(size_t)n * (size_t)out_features + o] * VLOAD(0, w + (size_t)o * (size_t)in_features + t * VEC);
    store_lanes(acc, dx + (size_t)n * (size_t)in_features + t * VEC, in_features - t * VEC);
}

/* dw[o, j..j+VEC) = sum_n dy[n, o] x[n, j..j+VEC); global (chunks, Out). */
__kernel void dense_backward_weights_small_batch(__global const float *x, __global const float *dy,
                                                 __global float *dw, int batch, int in_features, int out_features)
{
    const int t = (int)get_global_id(0), o = (int)get_global_id(1);
    const int chunks = (in_features + VEC - 1) / VEC;
    if (t >= chunks) return;
    floatv acc = (floatv)(0.0f);
    for (int n = 0; n < batch; n++)
        acc += dy[(size_t)n * (size_t)out_features + o] * VLOAD(0, x + (size_t)n * (size_t)in_features + t * VEC);
    store_lanes(acc, dw + (size_t)o * (size_t)in_features + t * VEC, in_features - t * VEC);
}
