/* Shared by the ONNX tests (tests/test_onnx_read.c, test_onnx_conformance.c). */
#ifndef NEUROFV_TEST_ONNX_H
#define NEUROFV_TEST_ONNX_H

#include "neurofv/onnx.h"

/* Debian libonnx-testdata's conformance tests. */
#define ONNX_TESTDATA "/usr/share/libonnx-testdata/data"

/* Whether ONNX_TESTDATA is there (else prints one "skipped" line for what). */
int onnx_testdata_present(const char *what);

/* The graph inputs after the first of a conformance test directory:
 * test_data_set_0/input_1.pb, input_2.pb, ... as a feed (free with
 * onnx_feed_free).  Returns the status of the first failing read. */
nfv_status onnx_load_feed(const char *dir, nfv_onnx_feed *feed);
void onnx_feed_free(nfv_onnx_feed *feed);

/* nfv_onnx_read of dir/model.onnx with dir's feed. */
nfv_status onnx_read_dir(const char *dir, nfv_onnx_graph *g);

#endif
