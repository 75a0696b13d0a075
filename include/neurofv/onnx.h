/* ONNX models read into neurofv's graph form (src/model/onnx_read.c).
 *
 * The file is parsed with protobuf-c from the C code that protoc-c generates
 * at build time from Debian libonnx-dev's onnx.proto.  Reading needs no
 * device: the result is an architecture (nodes in topological order, each
 * with its inputs, a readable name and the names of its tensors) plus the
 * float32 initializers those names refer to.  nfv_model_from_onnx (model.h)
 * turns it into a model on a device.
 *
 * Shapes: ONNX tensors are (N, C, D, H, W); neurofv keeps per-sample shapes
 * (C, D, H, W) or (F).  Inputs of rank 3 (N, C, L) and 4 (N, C, H, W) are
 * read as (C, 1, 1, L) and (C, 1, H, W), and the kernel, stride and padding
 * attributes of their Conv and pooling nodes are extended with unit axes in
 * front, so 1-D and 2-D nodes run on the 3-D kernels.
 *
 * Tensors: every initializer is kept under its ONNX name (the state_dict
 * name for torch exports), converted to neurofv's layout: Conv weights
 * (Co, Ci/groups, kd, kh, kw) with unit axes in front for 1-D / 2-D;
 * Linear weights (Out, In) (Gemm's alpha and transB and MatMul's (In, Out)
 * folded in on the host), Gemm's beta folded into the bias; a CONSTANT
 * node's tensor is (L, reshape...) with L = its features (1, or the batch
 * when the constant is per sample), already broadcast to the per-sample
 * shape.  A name used twice for different data gets a ".2" suffix.
 * Node names: torch's "/layer3/layer3.1/conv2/Conv" -> "layer3.1.conv2";
 * else the ONNX node name, the output name, or "<op><index>"; a suffix
 * "_2", ... makes them unique ("<name>.pad" / ".const" for the extra Pad
 * before an asymmetrically padded Conv and the Constant of an Add). */
#ifndef NEUROFV_ONNX_H
#define NEUROFV_ONNX_H

#include "neurofv/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One float32 tensor (an initializer, a Constant, or a .pb test tensor). */
typedef struct nfv_onnx_tensor {
    char name[NFV_PARAM_NAME_MAX];
    int ndim;
    long long shape[8];
    size_t numel;
    float *data;             /* malloc'ed, numel floats (ints converted) */
} nfv_onnx_tensor;

typedef struct nfv_onnx_graph {
    nfv_arch arch;           /* nodes in topological order; inputs, names and tensor_names filled */
    int input_ndim;          /* per-sample rank of the model input as neurofv sees it: 4 (C, D, H, W) or 1 (F) */
    int input_shape[4];      /* per-sample input shape (batch dimension dropped) */
    int onnx_input_rank;     /* rank of the ONNX graph input including N (2-5) */
    long long batch;         /* the input's N when the file fixes it, else 0 (symbolic) */
    char input_name[NFV_PARAM_NAME_MAX], output_name[NFV_PARAM_NAME_MAX];
    nfv_onnx_tensor *tensors; /* every tensor that tensor_names refer to */
    int tensor_count;
    long long opset;         /* default-domain opset */
    char producer[64];       /* "pytorch 1.13.1", ... */
} nfv_onnx_graph;

/* Constants to substitute for graph inputs (the conformance tests feed
 * input_1.pb ... as values; a neurofv model has one runtime input).  A
 * tensor with a name gives the graph input of that name; unnamed ones give
 * the graph inputs after the model input in order.  Values of an input
 * declared INT64 are converted back from float. */
typedef struct nfv_onnx_feed {
    const nfv_onnx_tensor *tensors;
    int count;
} nfv_onnx_feed;

/* Read path into out.  Every failure is one message naming the file and,
 * where it applies, the node (name and op) and what is supported:
 * unsupported ops, attributes and dtypes, malformed or truncated files,
 * cycles, missing inputs, shapes over 2^31 elements.  feed may be NULL. */
nfv_status nfv_onnx_read(const char *path, const nfv_onnx_feed *feed, nfv_onnx_graph *out);
void nfv_onnx_free(nfv_onnx_graph *g);
/* The tensor of name in g, or NULL. */
const nfv_onnx_tensor *nfv_onnx_find_tensor(const nfv_onnx_graph *g, const char *name);

/* A serialized TensorProto file (the conformance tests' input_0.pb,
 * output_0.pb) as float data; free with nfv_onnx_tensor_free. */
nfv_status nfv_onnx_read_tensor(const char *path, nfv_onnx_tensor *out);
void nfv_onnx_tensor_free(nfv_onnx_tensor *t);

/* Whether path names an ONNX file (by its ".onnx" ending). */
int nfv_is_onnx_path(const char *path);

#ifdef __cplusplus
}
#endif
#endif
