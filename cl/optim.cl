/* Optimizer updates, one work-item per parameter element (global size =
 * numel, no loop, so PoCL vectorizes across work-items).  Scalars that depend
 * only on the step (bias corrections) are computed on the host in double. */

/* torch.optim.Adam / AdamW (amsgrad=False, maximize=False), torch 1.13's
 * single-tensor path:
 *   AdamW:  p = p * (1 - lr wd)                       (decoupled != 0)
 *   Adam:   g = g + wd p                              (decoupled == 0)
 *   m = beta1 m + (1 - beta1) g
 *   v = beta2 v + (1 - beta2) g^2
 *   p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
 * with step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t). */
__kernel void adam_step(__global float *param, __global const float *grad, __global float *m, __global float *v,
                        float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                        float step_size, float bc2_sqrt)
{
    const size_t i = get_global_id(0);
    float p = param[i], g = grad[i];
    if (decoupled) p *= 1.0f - lr * weight_decay;
    else g += weight_decay * p;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - step_size * (mi / (sqrt(vi) / bc2_sqrt + eps));
}

/* torch.optim.SGD (dampening=0, nesterov=False):
 *   g = g + wd p;  vel = momentum vel + g;  p = p - lr vel.
 * vel starts at zero, so the first step gives vel = g exactly as PyTorch's
 * clone on its first step. */
__kernel void sgd_momentum_step(__global float *param, __global const float *grad, __global float *velocity,
                                float lr, float momentum, float weight_decay)
{
    const size_t i = get_global_id(0);
    const float p = param[i];
    const float g = grad[i] + weight_decay * p;
    const float vel = momentum * velocity[i] + g;
    velocity[i] = vel;
    param[i] = p - lr * vel;
}

/* Plain SGD (momentum 0): no velocity buffer needed. */
__kernel void sgd_step(__global float *param, __global const float *grad, float lr, float weight_decay)
{
    const size_t i = get_global_id(0);
    const float p = param[i];
    param[i] = p - lr * (grad[i] + weight_decay * p);
}
