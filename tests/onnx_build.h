/* Building ONNX models in C with the protobuf-c structures (for the
 * reader's tests: torch-like graphs and malformed files), and the
 * conformance-data helpers of test_onnx.h.  tests/onnx_build.c. */
#ifndef NEUROFV_TEST_ONNX_BUILD_H
#define NEUROFV_TEST_ONNX_BUILD_H

#include "gen/onnx.pb-c.h"

/* A model under construction: fixed-capacity arrays, every allocation
 * recorded so mb_free releases it. */
typedef struct mb {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto opset, *opsets[1];
    Onnx__NodeProto *nodes[64];
    Onnx__TensorProto *inits[64];
    Onnx__ValueInfoProto *inputs[8], *outputs[8];
    void *allocs[4096];
    int nalloc;
} mb;

void *mb_alloc(mb *b, size_t n);
char *mb_str(mb *b, const char *s);
void mb_init(mb *b, long long opset);
void mb_free(mb *b);
char **mb_names(mb *b, const char *list, size_t *n);
Onnx__NodeProto *mb_node(mb *b, const char *op, const char *name, const char *ins, const char *outs);
Onnx__AttributeProto *mb_attr(mb *b, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType t);
void mb_ints(mb *b, Onnx__NodeProto *n, const char *name, int cnt, const long long *v);
void mb_int(mb *b, Onnx__NodeProto *n, const char *name, long long v);
void mb_string(mb *b, Onnx__NodeProto *n, const char *name, const char *v);
Onnx__TensorProto *mb_tensor(mb *b, const char *name, int dtype, int ndim, const long long *dims,
                             const long long *vals);
Onnx__ValueInfoProto *mb_value(mb *b, const char *name, int ndim, const long long *dims);
void mb_input(mb *b, const char *name, int ndim, const long long *dims);
const char *mb_write(mb *b, const char *name);
void mb_output(mb *b, const char *name);

#endif
