/* Plain double-precision reference of a whole sequential model (forward and
 * loss), used by the model and training tests; gradients come from central
 * finite differences of it. */
#ifndef NEUROFV_REF_MODEL_H
#define NEUROFV_REF_MODEL_H

#include "neurofv/model.h"

/* Per layer 4 arrays: weight, bias, running_mean, running_var (NULL if absent). */
typedef struct ref_params {
    int layers;
    double **p;      /* p[layer * 4 + j] */
    size_t *n;       /* element counts */
} ref_params;

int ref_params_download(nfv_context *ctx, const nfv_model *m, ref_params *out);
void ref_params_free(ref_params *rp);
/* Layers 0..upto (-1 = all); out: n * (that layer's output) doubles.  training: BN uses batch statistics (biased
 * variance); Dropout is identity (tests avoid it in training mode). */
void ref_model_forward(const nfv_model *m, const ref_params *rp, const double *x, int n, int training, int upto,
                       double *out);
/* Mean loss of the head over n samples (class weights may be NULL). */
double ref_head_loss(const nfv_model *m, const double *out, const double *targets, int n, const double *class_weights);

#endif
