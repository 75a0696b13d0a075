/* Loss functions over a batch, each in one work-group: the batch is small
 * (tens to a few hundred samples), so a single group that strides over the
 * samples and reduces in local memory is simpler than a two-pass reduction
 * and costs one launch.  The host picks the group size (a power of two, from
 * the device's limit); scratch is __local, one float per work-item.
 *
 * Shapes: logits (N, K) for softmax cross-entropy; logits / predictions (N)
 * or (N, 1) and targets (N) for BCE and MSE; loss (1); the gradient has the
 * logits' shape and is written only when want_grad != 0 (its buffer
 * argument is then a dummy that is never touched).  Huber takes the same
 * shapes as MSE. */

/* Sum of v over the work-group, returned to every work-item.  `scratch`
 * holds get_local_size(0) floats; the size is a power of two. */
static float group_sum(float v, __local float *scratch)
{
    const int lid = (int)get_local_id(0), size = (int)get_local_size(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = size / 2; step > 0; step /= 2) {
        if (lid < step) scratch[lid] += scratch[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch may be reused right after */
    return total;
}

/* log(1 + exp(z)) without overflow for large z nor loss of precision for
 * very negative z. */
static float softplus(float z)
{
    return fmax(z, 0.0f) + log1p(exp(-fabs(z)));
}

/* Class index held as a float, or -1 when it is not an integer in [0, k). */
static int class_index(float label, int k)
{
    if (!(label >= 0.0f && label < (float)k)) return -1; /* also catches NaN */
    int c = (int)label;
    return (float)c == label ? c : -1;
}

/* PyTorch's cross_entropy(logits, labels, weight=class_weights, reduction='mean'):
 *   l_i = logsumexp(z_i) - z_i[y_i],  loss = sum_i w[y_i] l_i / sum_i w[y_i],
 *   dlogits[i, j] = w[y_i] (softmax(z_i)_j - [j == y_i]) / sum_i w[y_i].
 * An invalid label makes the loss NaN (the host cannot check device labels
 * without a sync; NaN is impossible to miss). */
__kernel void softmax_cross_entropy(__global const float *logits, __global const float *labels,
                                    __global const float *class_weights, int has_weights, int n, int k,
                                    __global float *loss, __global float *dlogits, int want_grad,
                                    __local float *scratch)
{
    const int lid = (int)get_local_id(0), size = (int)get_local_size(0);
    float part_loss = 0.0f, part_weight = 0.0f;
    for (int i = lid; i < n; i += size) {
        __global const float *z = logits + (size_t)i * (size_t)k;
        const int y = class_index(labels[i], k);
        float zmax = z[0];
        for (int j = 1; j < k; j++) zmax = fmax(zmax, z[j]);
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += exp(z[j] - zmax);
        const float lse = zmax + log(s);
        if (y < 0) {
            part_loss = NAN;
            continue;
        }
        const float w = has_weights ? class_weights[y] : 1.0f;
        part_loss += w * (lse - z[y]);
        part_weight += w;
    }
    const float total_loss = group_sum(part_loss, scratch);
    const float total_weight = group_sum(part_weight, scratch);
    if (lid == 0) loss[0] = total_loss / total_weight;
    if (!want_grad) return;
    for (int i = lid; i < n; i += size) {
        __global const float *z = logits + (size_t)i * (size_t)k;
        __global float *dz = dlogits + (size_t)i * (size_t)k;
        const int y = class_index(labels[i], k);
        float zmax = z[0];
        for (int j = 1; j < k; j++) zmax = fmax(zmax, z[j]);
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += exp(z[j] - zmax);
        const float lse = zmax + log(s);
        const float scale = y < 0 ? NAN : (has_weights ? class_weights[y] : 1.0f) / total_weight;
        for (int j = 0; j < k; j++) dz[j] = scale * (exp(z[j] - lse) - (j == y ? 1.0f : 0.0f));
    }
}

/* PyTorch's binary_cross_entropy_with_logits(x, t, pos_weight=p), mean over N:
 *   l_i = p t_i softplus(-x_i) + (1 - t_i) softplus(x_i)
 *       (= -[p t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], stable form)
 *   dx_i = (p t_i (sigmoid(x_i) - 1) + (1 - t_i) sigmoid(x_i)) / N. */
__kernel void bce_with_logits(__global const float *logits, __global const float *targets, float pos_weight, int n,
                              __global float *loss, __global float *dlogits, int want_grad, __local float *scratch)
{
    const int lid = (int)get_local_id(0), size = (int)get_local_size(0);
    float part = 0.0f;
    for (int i = lid; i < n; i += size) {
        const float x = logits[i], t = targets[i];
        part += pos_weight * t * softplus(-x) + (1.0f - t) * softplus(x);
        if (want_grad) {
            /* sigmoid from exp(-|x|) so neither branch overflows. */
            const float e = exp(-fabs(x));
            const float sig = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            const float one_minus_sig = x >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
            dlogits[i] = (-pos_weight * t * one_minus_sig + (1.0f - t) * sig) / (float)n;
        }
    }
    const float total = group_sum(part, scratch);
    if (lid == 0) loss[0] = total / (float)n;
}

/* PyTorch's mse_loss(pred, t), mean over N: l = sum (p - t)^2 / N,
 * dpred_i = 2 (p_i - t_i) / N. */
__kernel void mse_loss(__global const float *pred, __global const float *targets, int n, __global float *loss,
                       __global float *dpred, int want_grad, __local float *scratch)
{
    const int lid = (int)get_local_id(0), size = (int)get_local_size(0);
    float part = 0.0f;
    for (int i = lid; i < n; i += size) {
        const float d = pred[i] - targets[i];
        part += d * d;
        if (want_grad) dpred[i] = 2.0f * d / (float)n;
    }
    const float total = group_sum(part, scratch);
    if (lid == 0) loss[0] = total / (float)n;
}

/* PyTorch's huber_loss(pred, t, delta=delta), mean over N, with d_i = p_i - t_i:
 *   l_i = d^2 / 2                  when |d| <= delta
 *       = delta (|d| - delta / 2)  otherwise (linear tails: an outlier
 *                                  pulls with at most delta, not 2 |d|),
 *   dpred_i = clamp(d_i, -delta, delta) / N.
 * At |d| = delta both pieces and their slopes meet. */
__kernel void huber_loss(__global const float *pred, __global const float *targets, float delta, int n,
                         __global float *loss, __global float *dpred, int want_grad, __local float *scratch)
{
    const int lid = (int)get_local_id(0), size = (int)get_local_size(0);
    float part = 0.0f;
    for (int i = lid; i < n; i += size) {
        const float d = pred[i] - targets[i], a = fabs(d);
        part += a <= delta ? 0.5f * d * d : delta * (a - 0.5f * delta);
        if (want_grad) dpred[i] = clamp(d, -delta, delta) / (float)n;
    }
    const float total = group_sum(part, scratch);
    if (lid == 0) loss[0] = total / (float)n;
}
