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
