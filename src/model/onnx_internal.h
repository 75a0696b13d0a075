/* Shared by the ONNX reader's files (src/model/onnx_read.c: file, tensors,
 * graph walk, names; onnx_ops.c: the network ops; onnx_fold.c: the host
 * constant folder).  Not a public header. */
#ifndef NEUROFV_MODEL_ONNX_INTERNAL_H
#define NEUROFV_MODEL_ONNX_INTERNAL_H

#include <limits.h>
#include <stddef.h>

#include "gen/onnx.pb-c.h"
#include "neurofv/onnx.h"

#define OX_MAX_RANK 8
/* A folded shape value meaning "the batch size" when the file leaves N
 * symbolic (Shape of a graph tensor: torch's x.view(x.size(0), -1)). */
#define OX_BATCH_DIM (LLONG_MIN + 1)
/* Elements of one tensor at most (onnx.h: shapes over 2^31 are refused). */
#define OX_MAX_NUMEL (1LL << 31)

enum { OX_F32 = 1, OX_I64 = 7 }; /* the ONNX TensorProto data types kept */

/* A tensor known on the host: an initializer, a fed input, a Constant node
 * or a folded shape computation. */
typedef struct ox_const {
    int dtype;               /* OX_F32 or OX_I64 */
    int ndim;
    long long shape[OX_MAX_RANK];
    size_t numel;
    float *f;                /* OX_F32: numel floats (malloc'ed) */
    long long *i;            /* OX_I64: numel values (malloc'ed) */
} ox_const;

typedef enum ox_kind { OX_NONE = 0, OX_CONST, OX_GRAPH } ox_kind;

/* One named ONNX value. */
typedef struct ox_value {
    const char *name;        /* points into the parsed model */
    ox_kind kind;
    ox_const c;              /* OX_CONST */
    int node;                /* OX_GRAPH: arch node index or NFV_INPUT_NODE */
    int rank;                /* OX_GRAPH: ONNX rank (2-5) */
    long long dims[OX_MAX_RANK]; /* OX_GRAPH: ONNX shape; dims[0] = N (0: symbolic) */
    int uses;                /* node inputs reading it, plus 1 if a graph output */
    int producer;            /* index of the ONNX node writing it, -1: initializer or graph input */
    int matmul_linear;       /* OX_GRAPH: 1 = output of a bias-less LINEAR from MatMul (an Add may give its bias) */
} ox_value;

typedef struct ox_ctx {
    const char *path;
    Onnx__GraphProto *graph;
    long long opset;
    ox_value *vals;
    int nvals, capvals;
    int *slots;              /* hash of vals by name: index + 1, 0 = empty */
    size_t nslots;
    nfv_onnx_graph *g;
    int cap_layers, cap_tensors;
    const Onnx__NodeProto *node; /* the node being mapped (messages, names) */
    int node_index;          /* its index in the file */
    long long batch;         /* the model input's N (0: symbolic) */
} ox_ctx;

/* ---- onnx_util.c ---- */
/* "path: node "name" (op X): <message>" (the node being mapped) as status s. */
nfv_status ox_fail(ox_ctx *c, nfv_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
ox_value *ox_get(ox_ctx *c, const char *name);
/* A new value of name; NULL if the name is taken or the table is full. */
ox_value *ox_new_value(ox_ctx *c, const char *name);
/* The k-th input of the current node, NULL when absent or "" (optional). */
ox_value *ox_input(ox_ctx *c, int k);
/* The k-th output of the current node as a fresh value. */
ox_value *ox_output(ox_ctx *c, int k);
/* Whether output k of the current node exists and is read by anything. */
int ox_output_used(ox_ctx *c, int k);

/* Attributes of the current node.  Every attribute must be in `allowed`
 * (space-separated names), else an "unsupported attribute" error. */
nfv_status ox_check_attrs(ox_ctx *c, const char *allowed);
const Onnx__AttributeProto *ox_attr(ox_ctx *c, const char *name);
nfv_status ox_attr_int(ox_ctx *c, const char *name, long long def, long long *out);
nfv_status ox_attr_float(ox_ctx *c, const char *name, float def, float *out);
/* A list of ints; *n = -1 when absent. */
nfv_status ox_attr_ints(ox_ctx *c, const char *name, long long *out, int max, int *n);
/* A string attribute into buf ("" when absent; def when given and absent). */
nfv_status ox_attr_string(ox_ctx *c, const char *name, const char *def, char *buf, size_t cap);

/* Append a node of kind to the architecture (name from the current ONNX
 * node plus suffix, made unique); *index receives its index. */
nfv_status ox_emit(ox_ctx *c, nfv_layer_kind kind, int n_inputs, const int *inputs, const char *suffix,
                   nfv_layer_spec **out, int *index);
/* Add a float tensor to the graph under a unique name made from base
 * (data is taken over, freed on failure); the name goes to name_out
 * (NFV_PARAM_NAME_MAX). */
nfv_status ox_add_tensor(ox_ctx *c, const char *base, int ndim, const long long *shape, float *data, char *name_out);

/* A graph value's per-sample shape as neurofv sees it: rank 5 (N, C, D, H, W)
 * -> (C, D, H, W); 4 -> (C, 1, H, W); 3 -> (C, 1, 1, L); 2 -> (F). */
void ox_per_sample(int rank, const long long *dims, int *ndim, int shape[4]);
long long ox_per_sample_numel(const ox_value *v);
void ox_set_graph(ox_value *v, int node, int rank, const long long *dims);

nfv_status ox_const_alloc(ox_ctx *c, ox_const *k, int dtype, int ndim, const long long *shape);
void ox_const_free(ox_const *k);
/* Value j of k as double / long long (either dtype). */
double ox_const_get_f(const ox_const *k, size_t j);
long long ox_const_get_i(const ox_const *k, size_t j);
/* A TensorProto as a constant (bounds and dtype checked; what names it in messages). */
nfv_status ox_tensor_to_const(ox_ctx *c, const Onnx__TensorProto *t, const char *what, ox_const *out);
const char *ox_dtype_name(int dtype);

/* ---- onnx_ops.c: Conv, pools, norms, activations, softmax; the op table ---- */
/* Input k of the current node as a graph tensor of rank min_rank..max_rank. */
nfv_status ox_graph_in(ox_ctx *c, int k, int min_rank, int max_rank, ox_value **out);
/* Input k as a constant of dtype (NULL when optional and absent). */
nfv_status ox_const_in(ox_ctx *c, int k, int required, int dtype, ox_value **out);
/* Output 0 of the current node is node's output of ONNX shape (rank, dims). */
void ox_set_out(ox_ctx *c, int node, int rank, const long long *dims);
/* A copy of constant v's floats times scale as a tensor named after v. */
nfv_status ox_param(ox_ctx *c, const ox_value *v, int ndim, const long long *shape, float scale, char *name_out);
typedef nfv_status (*ox_op_fn)(ox_ctx *c);
ox_op_fn ox_find_op(const char *op_type);
/* "Add, AveragePool, ..." */
const char *ox_supported_ops(void);
/* ---- onnx_graph_ops.c: Flatten, Reshape, Gemm, MatMul, Add, Concat, Pad,
 * Identity, Dropout ---- */
nfv_status ox_op_flatten(ox_ctx *c);
nfv_status ox_op_reshape(ox_ctx *c);
nfv_status ox_op_gemm(ox_ctx *c);
nfv_status ox_op_matmul(ox_ctx *c);
nfv_status ox_op_add(ox_ctx *c);
nfv_status ox_op_concat(ox_ctx *c);
nfv_status ox_op_pad(ox_ctx *c);
nfv_status ox_op_identity(ox_ctx *c);
nfv_status ox_op_dropout(ox_ctx *c);
/* A node reading the graph tensor x reshaped to the ONNX shape (rank, dims)
 * with dims[0] = N: a RESHAPE node (or FLATTEN to rank 2). */
nfv_status ox_emit_reshape(ox_ctx *c, const ox_value *x, int rank, const long long *dims, ox_value *y);

/* ---- onnx_fold.c: Constant, Shape, Gather, Unsqueeze, Squeeze, Cast,
 * Slice, Transpose, and Concat / Reshape / Identity of constants ---- */
nfv_status ox_op_constant(ox_ctx *c);
nfv_status ox_op_shape(ox_ctx *c);
nfv_status ox_op_gather(ox_ctx *c);
nfv_status ox_op_unsqueeze(ox_ctx *c);
nfv_status ox_op_squeeze(ox_ctx *c);
nfv_status ox_op_cast(ox_ctx *c);
nfv_status ox_op_slice(ox_ctx *c);
nfv_status ox_op_transpose(ox_ctx *c);
nfv_status ox_fold_concat(ox_ctx *c, int axis);
/* Reshape of a constant to the target shape (already resolved). */
nfv_status ox_fold_reshape(ox_ctx *c, const ox_value *x, int rank, const long long *dims, ox_value *y);

#endif
