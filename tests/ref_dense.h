/* Plain C references (double) for the dense layer, the losses and the
 * optimizers; the device ops in src/linear.c, src/loss.c, src/optim.c are
 * tested against these.  Shapes are row-major as in include/neurofv/ops.h. */
#ifndef NEUROFV_REF_DENSE_H
#define NEUROFV_REF_DENSE_H

/* y (n, out) = x (n, in) w (out, in)^T + b (out) (b may be NULL). */
void ref_linear_forward(int n, int in, int out, const double *x, const double *w, const double *b, double *y);
/* dx (n, in) = dy w; dw (out, in) = dy^T x; db (out) = column sums of dy.  Any output may be NULL. */
void ref_linear_backward(int n, int in, int out, const double *x, const double *w, const double *dy, double *dx,
                         double *dw, double *db);

/* PyTorch cross_entropy with optional class weights (k), weighted mean.
 * labels hold class indices.  Returns the loss; dlogits (n, k) may be NULL. */
double ref_softmax_cross_entropy(int n, int k, const double *logits, const int *labels, const double *class_weights,
                                 double *dlogits);
/* PyTorch binary_cross_entropy_with_logits with pos_weight, mean over n. */
double ref_bce_with_logits(int n, const double *logits, const double *targets, double pos_weight, double *dlogits);
/* Mean squared error over n. */
double ref_mse_loss(int n, const double *pred, const double *targets, double *dpred);
/* PyTorch's huber_loss(pred, targets, delta=delta), mean over n; dpred (n) may be NULL. */
double ref_huber_loss(int n, const double *pred, const double *targets, double delta, double *dpred);

/* One torch.optim.Adam (decoupled = 0) / AdamW (decoupled = 1) update of
 * count elements; step is 1-based. */
void ref_adam_step(int count, double lr, double beta1, double beta2, double eps, double weight_decay, int decoupled,
                   int step, double *param, const double *grad, double *m, double *v);
/* One torch.optim.SGD update (dampening 0, no Nesterov); velocity starts at 0
 * and is unused when momentum is 0. */
void ref_sgd_step(int count, double lr, double momentum, double weight_decay, double *param, const double *grad,
                  double *velocity);

#endif
