/* Losses over a batch (cl/loss.cl): softmax cross-entropy with optional class
 * weights, binary cross-entropy with logits with pos_weight, mean squared
 * error, Huber.  Each runs as one work-group that strides over the batch; the loss
 * is a 1-element tensor and the gradient (same shape as the logits) is
 * optional. */
#include <math.h>
#include <stdio.h>

#include "neurofv/ops.h"

/* Upper bound on the loss work-group size: batches are small, and one fixed
 * size means one compiled work-group function on PoCL. */
#define LOSS_GROUP_MAX 64

static nfv_status shape_fail(const char *op, const char *arg, const nfv_tensor *t, const char *want)
{
    char got[64];
    return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s", op, arg,
                    t ? nfv_shape_str(t, got, sizeof got) : "(null)", want);
}

/* A per-sample column: (N) or (N, 1). */
static int is_column(const nfv_tensor *t, int n)
{
    if (!t || t->shape[0] != n) return 0;
    return t->ndim == 1 || (t->ndim == 2 && t->shape[1] == 1);
}

static int same_shape(const nfv_tensor *a, const nfv_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

/* loss must have one element; grad (if given) the logits' shape, where a
 * per-sample column may be (N) or (N, 1) on either side. */
static nfv_status check_loss_out(const char *op, const nfv_tensor *loss, const nfv_tensor *logits,
                                 const nfv_tensor *grad, const char *grad_name)
{
    if (!loss || loss->numel != 1) return shape_fail(op, "loss", loss, "(1)");
    const int column = is_column(logits, logits->shape[0]);
    if (grad && !(same_shape(grad, logits) || (column && is_column(grad, logits->shape[0])))) {
        char want[64];
        return shape_fail(op, grad_name, grad, nfv_shape_str(logits, want, sizeof want));
    }
    return NFV_OK;
}

/* Launch `k` as a single work-group with its __local scratch as argument
 * `scratch_index` (one float per work-item, see cl/loss.cl). */
static nfv_status launch_single_group(nfv_context *ctx, cl_kernel k, const char *name, cl_uint scratch_index)
{
    size_t limit = nfv_kernel_max_local(ctx, k);
    if (limit > LOSS_GROUP_MAX) limit = LOSS_GROUP_MAX;
    size_t local = 1;
    while (local * 2 <= limit) local *= 2; /* the tree reduction needs a power of two */
    NFV_CL_CHECK(clSetKernelArg(k, scratch_index, local * sizeof(float), NULL), "clSetKernelArg", name);
    return nfv_kernel_launch(ctx, k, 1, &local, &local);
}

nfv_status nfv_softmax_cross_entropy(nfv_context *ctx, const nfv_tensor *logits, const nfv_tensor *labels,
                                     const nfv_tensor *class_weights, nfv_tensor *loss, nfv_tensor *dlogits)
{
    static const char *op = "softmax cross-entropy";
    if (!logits || logits->ndim != 2) return shape_fail(op, "logits", logits, "(N, K)");
    const int n = logits->shape[0], classes = logits->shape[1];
    char want[64];
    snprintf(want, sizeof want, "(%d)", n);
    if (!is_column(labels, n)) return shape_fail(op, "labels", labels, want);
    snprintf(want, sizeof want, "(%d)", classes);
    if (class_weights && !(class_weights->ndim == 1 && class_weights->shape[0] == classes))
        return shape_fail(op, "class_weights", class_weights, want);
    NFV_TRY(check_loss_out(op, loss, logits, dlogits, "dlogits"));

    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "loss", "", "softmax_cross_entropy", &k));
    const char *kn = "softmax_cross_entropy";
    const int has_weights = class_weights != NULL, want_grad = dlogits != NULL;
    /* Absent tensors are replaced by buffers the kernel never touches. */
    cl_mem weights_buf = has_weights ? class_weights->buf : logits->buf;
    cl_mem grad_buf = want_grad ? dlogits->buf : loss->buf;
    NFV_ARG(k, kn, 0, logits->buf);
    NFV_ARG(k, kn, 1, labels->buf);
    NFV_ARG(k, kn, 2, weights_buf);
    NFV_ARG(k, kn, 3, has_weights);
    NFV_ARG(k, kn, 4, n);
    NFV_ARG(k, kn, 5, classes);
    NFV_ARG(k, kn, 6, loss->buf);
    NFV_ARG(k, kn, 7, grad_buf);
    NFV_ARG(k, kn, 8, want_grad);
    return launch_single_group(ctx, k, kn, 9);
}

nfv_status nfv_bce_with_logits(nfv_context *ctx, const nfv_tensor *logits, const nfv_tensor *targets,
                               float pos_weight, nfv_tensor *loss, nfv_tensor *dlogits)
{
    static const char *op = "BCE with logits";
    if (!logits || !is_column(logits, logits->shape[0])) return shape_fail(op, "logits", logits, "(N, 1) or (N)");
    const int n = logits->shape[0];
    char want[64];
    snprintf(want, sizeof want, "(%d)", n);
    if (!is_column(targets, n)) return shape_fail(op, "targets", targets, want);
    if (!(pos_weight >= 0.0f))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: pos_weight %g must be a non-negative number", op, pos_weight);
    NFV_TRY(check_loss_out(op, loss, logits, dlogits, "dlogits"));

    cl_kernel k;
    const char *kn = "bce_with_logits";
    NFV_TRY(nfv_kernel_get(ctx, "loss", "", kn, &k));
    const int want_grad = dlogits != NULL;
    cl_mem grad_buf = want_grad ? dlogits->buf : loss->buf;
    NFV_ARG(k, kn, 0, logits->buf);
    NFV_ARG(k, kn, 1, targets->buf);
    NFV_ARG(k, kn, 2, pos_weight);
    NFV_ARG(k, kn, 3, n);
    NFV_ARG(k, kn, 4, loss->buf);
    NFV_ARG(k, kn, 5, grad_buf);
    NFV_ARG(k, kn, 6, want_grad);
    return launch_single_group(ctx, k, kn, 7);
}

nfv_status nfv_mse_loss(nfv_context *ctx, const nfv_tensor *pred, const nfv_tensor *targets, nfv_tensor *loss,
                        nfv_tensor *dpred)
{
    static const char *op = "MSE loss";
    if (!pred || !is_column(pred, pred->shape[0])) return shape_fail(op, "pred", pred, "(N, 1) or (N)");
    const int n = pred->shape[0];
    char want[64];
    snprintf(want, sizeof want, "(%d)", n);
    if (!is_column(targets, n)) return shape_fail(op, "targets", targets, want);
    NFV_TRY(check_loss_out(op, loss, pred, dpred, "dpred"));

    cl_kernel k;
    const char *kn = "mse_loss";
    NFV_TRY(nfv_kernel_get(ctx, "loss", "", kn, &k));
    const int want_grad = dpred != NULL;
    cl_mem grad_buf = want_grad ? dpred->buf : loss->buf;
    NFV_ARG(k, kn, 0, pred->buf);
    NFV_ARG(k, kn, 1, targets->buf);
    NFV_ARG(k, kn, 2, n);
    NFV_ARG(k, kn, 3, loss->buf);
    NFV_ARG(k, kn, 4, grad_buf);
    NFV_ARG(k, kn, 5, want_grad);
    return launch_single_group(ctx, k, kn, 6);
}

nfv_status nfv_huber_loss(nfv_context *ctx, const nfv_tensor *pred, const nfv_tensor *targets, float delta,
                          nfv_tensor *loss, nfv_tensor *dpred)
{
    static const char *op = "Huber loss";
    if (!pred || !is_column(pred, pred->shape[0])) return shape_fail(op, "pred", pred, "(N, 1) or (N)");
    const int n = pred->shape[0];
    char want[64];
    snprintf(want, sizeof want, "(%d)", n);
    if (!is_column(targets, n)) return shape_fail(op, "targets", targets, want);
    if (!(delta > 0.0f) || delta == (float)INFINITY)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: delta %g must be a positive number", op, delta);
    NFV_TRY(check_loss_out(op, loss, pred, dpred, "dpred"));

    cl_kernel k;
    const char *kn = "huber_loss";
    NFV_TRY(nfv_kernel_get(ctx, "loss", "", kn, &k));
    const int want_grad = dpred != NULL;
    cl_mem grad_buf = want_grad ? dpred->buf : loss->buf;
    NFV_ARG(k, kn, 0, pred->buf);
    NFV_ARG(k, kn, 1, targets->buf);
    NFV_ARG(k, kn, 2, delta);
    NFV_ARG(k, kn, 3, n);
    NFV_ARG(k, kn, 4, loss->buf);
    NFV_ARG(k, kn, 5, grad_buf);
    NFV_ARG(k, kn, 6, want_grad);
    return launch_single_group(ctx, k, kn, 7);
}
