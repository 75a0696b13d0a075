/* Whole-model checks shared by the sequential and graph model tests:
 * device forward and input gradient against the double reference
 * (ref_model.c) and its central finite differences. */
#ifndef NEUROFV_TEST_MODEL_CHECK_H
#define NEUROFV_TEST_MODEL_CHECK_H

#include "neurofv/model.h"

/* Random BN running statistics and affine so eval mode is not the identity. */
void randomize_bn(nfv_context *ctx, nfv_model *m, unsigned seed);
/* Build spec on input in (C, D, H, W), forward batch n to node upto (-1: the
 * output) in training or eval mode, and check the output and the input
 * gradient of sum(g * output) against the reference. */
void check_model(const char *spec, const int in[4], int n, int classes, nfv_head head, int training, int upto);
/* The same in eval mode with conv -> BN [-> ReLU] fusion on
 * (nfv_model_set_fusion); also checks that some group was fused. */
void check_model_fused(const char *spec, const int in[4], int n, int classes, nfv_head head, int upto);

#endif
