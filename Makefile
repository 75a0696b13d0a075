# neurofv: static library, the `neurofv` binary and the test runner.
#   make            build everything
#   make test       run the unit and end-to-end tests (CI runs this)
#   make test-torch PyTorch parity checks (Debian python3-torch)
#   make asan       build and run the tests under AddressSanitizer + UBSan
#   make check-cl   compile every cl/*.cl standalone with clang (no device needed)
#   make bench      neurofv bench --json and PyTorch side by side (BENCH_ARGS for more)
CC      ?= cc
OPT     ?= -O2
BUILD   ?= build
# make MPI=1: the same program built with Open MPI's mpicc into build-mpi/
# (data-parallel training and distributed sweeps under mpirun; see the
# README's "Running on a cluster").  Without it there is no MPI dependency.
ifeq ($(MPI),1)
CC      := mpicc
BUILD   := build-mpi
EXTRA_CFLAGS += -DNFV_WITH_MPI
ROOT_COPY :=
# the viewer bundle tools/install-deps built for the default build
VIEWER_DIR := $(CURDIR)/build/viewer
else
ROOT_COPY := neurofv
endif
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -D_GNU_SOURCE -Iinclude -Isrc -I$(BUILD) -I/usr/include/nifti $(EXTRA_CFLAGS)
LDLIBS  += -lclblast -lOpenCL -lnifti2 -lznz -lcjson -lprotobuf-c -lgif -lfftw3f -lz -lm
LDFLAGS += $(EXTRA_LDFLAGS)
PYTHON  ?= /usr/bin/python3

CL_SRC   := $(sort $(wildcard cl/*.cl))
# cl/common.cl and cl/*_common.cl are preludes the others #include (inlined at
# embed time), not programs.
CL_PROGS := $(filter-out cl/common.cl cl/%_common.cl,$(CL_SRC))
# src/ is in layers, each using only those below it (docs/ARCHITECTURE.md):
# base < runtime < io < layers < model < vis < explain < cli.
LAYERS   := base runtime io layers model vis explain
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
LIB_SRC  := $(foreach l,$(LAYERS),$(sort $(wildcard src/$(l)/*.c)))
HEADERS  := $(wildcard include/neurofv/*.h) $(wildcard src/*/*.h)
TEST_SRC := $(sort $(wildcard tests/*.c))

# ONNX reading (src/model/onnx_*.c) uses C generated at build time by protoc-c
# (Debian protobuf-c-compiler) from Debian libonnx-dev's onnx.proto, which is
# proto2, `package onnx` (so the types are Onnx__ModelProto, ...) and needs no
# other .proto: $(BUILD)/gen/onnx.pb-c.{c,h}, compiled into the library and
# linked with -lprotobuf-c.  Nothing of the format is parsed by hand.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
PROTOC_C   ?= protoc-c
ONNX_GEN_C := $(BUILD)/gen/onnx.pb-c.c
ONNX_GEN_H := $(BUILD)/gen/onnx.pb-c.h

LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/cl_sources.o $(BUILD)/obj/gen/onnx.pb-c.o
CLI_OBJ  := $(CLI_SRC:src/%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:tests/%.c=$(BUILD)/obj/tests/%.o)
LIB      := $(BUILD)/libneurofv.a
BIN      := $(BUILD)/neurofv
TESTBIN  := $(BUILD)/neurofv-tests

.PHONY: all viewer test-browser test test-mpi test-torch test-configs test-oclgrind asan check-cl check-layers clean bench demo onnx-demo
all: $(BIN) $(TESTBIN) $(ROOT_COPY)

# The binary at the repository root is a copy for convenience (./neurofv).
neurofv: $(BIN)
	cp $(BIN) neurofv.tmp && mv -f neurofv.tmp neurofv

$(BUILD)/cl_sources.c: $(CL_SRC) tools/embed-cl.sh | $(BUILD)
	sh tools/embed-cl.sh $@ $(CL_PROGS)

# Command and test tables are generated from NFV_COMMAND(...) lines in
# src/cli/cmd_*.c and TEST(...) lines in tests/*.c, so adding one touches one file.
$(BUILD)/command_list.h: $(CLI_SRC) | $(BUILD)
	grep -h '^NFV_COMMAND(' $(filter src/cli/cmd_%.c,$(CLI_SRC)) > $@.tmp; mv $@.tmp $@
$(BUILD)/test_list.h: $(TEST_SRC) | $(BUILD)
	grep -ho '^TEST([a-z0-9_]*)' $(TEST_SRC) > $@.tmp; mv $@.tmp $@

# Each object rule also makes its own folder: $(BUILD) may already exist
# without them (install-deps builds the viewer bundle into $(BUILD)/viewer).
$(BUILD):
	mkdir -p $(BUILD)/obj/tests

# One protoc-c run writes both files; the header is a by-product of the .c.
$(ONNX_GEN_C): $(ONNX_PROTO) | $(BUILD)
	@mkdir -p $(BUILD)/gen
	$(PROTOC_C) -I$(dir $(ONNX_PROTO)) --c_out=$(BUILD)/gen $(ONNX_PROTO)
$(ONNX_GEN_H): $(ONNX_GEN_C) ;
$(BUILD)/obj/gen/onnx.pb-c.o: $(ONNX_GEN_C) $(ONNX_GEN_H)
	@mkdir -p $(@D)
	$(CC) -std=c11 $(OPT) -g -I$(BUILD)/gen $(EXTRA_CFLAGS) -c $< -o $@
# Every file that includes gen/onnx.pb-c.h waits for it.
$(filter $(BUILD)/obj/model/onnx%.o,$(LIB_OBJ)) $(filter $(BUILD)/obj/tests/test_onnx%.o,$(TEST_OBJ)): $(ONNX_GEN_H)

$(BUILD)/obj/%.o: src/%.c $(HEADERS) | $(BUILD)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/obj/cl_sources.o: $(BUILD)/cl_sources.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/obj/cli/main.o: $(BUILD)/command_list.h
$(BUILD)/obj/tests/%.o: tests/%.c $(wildcard tests/*.h) $(HEADERS) $(BUILD)/test_list.h | $(BUILD)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

# The NiiVue bundle the reports copy (src/io/viewer.c looks in
# $NEUROFV_VIEWER_DIR, then <binary's folder>/viewer, then this folder).
VIEWER_DIR ?= $(CURDIR)/$(BUILD)/viewer
$(BUILD)/obj/io/viewer.o: CFLAGS += -DNFV_VIEWER_DIR='"$(VIEWER_DIR)"'
# tools/viewer/build.sh: npm ci from the lockfile, then NiiVue's classic-script
# build and the page glue into $(BUILD)/viewer (tools/install-deps runs it).
viewer:
	bash tools/viewer/build.sh $(BUILD)/viewer

$(LIB): $(LIB_OBJ)
	rm -f $@; ar rcs $@ $^
$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@
$(TESTBIN): $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(LIB) $(LDLIBS) -o $@

# On a fresh Debian 12 machine the test command alone works: what is missing
# is installed first (tools/install-deps prints nothing when all is there).
test:
	@bash tools/install-deps
	$(MAKE) all
	NEUROFV_BIN=$(CURDIR)/$(BIN) $(TESTBIN)

# The HTML reports in headless Chromium, offline: console errors, the viewer
# draws, the threshold slider acts, every link resolves (tools/viewer/test-browser.sh).
test-browser: all
	bash tools/viewer/build.sh $(BUILD)/viewer
	NEUROFV_BIN=$(CURDIR)/$(BIN) PYTHON=$(PYTHON) bash tools/viewer/test-browser.sh

# Every include goes to the same or a lower layer (docs/ARCHITECTURE.md).
check-layers:
	sh tools/check-layers.sh

# Kernel tests under every configuration the per-device table can pick
# (CPU and GPU profiles), on this machine's device.
test-configs: all
	sh tools/test-configs.sh $(TESTBIN)

# Kernel tests under oclgrind (bounds, data races, API) in the GPU and CPU
# kernel configurations; 0 findings to pass.
test-oclgrind: all
	sh tools/test-oclgrind.sh $(TESTBIN)

# neurofv built with Open MPI (make MPI=1) under mpirun, 2 ranks: data-parallel
# training equals one process, sweeps split over ranks give the same bytes,
# shards merge, a failing rank stops all (tools/test-mpi.sh).
test-mpi:
	$(MAKE) MPI=1 -j$$(nproc) build-mpi/neurofv
	NEUROFV_MPI_BIN=build-mpi/neurofv PYTHON=$(PYTHON) bash tools/test-mpi.sh

test-torch: all
	NEUROFV_BIN=$(CURDIR)/$(BIN) $(PYTHON) tools/torch_parity.py
	NEUROFV_BIN=$(CURDIR)/$(BIN) $(PYTHON) tools/onnx_parity.py
	NEUROFV_BIN=$(CURDIR)/$(BIN) $(PYTHON) tools/explain_parity.py

# Every kernel file compiles standalone as OpenCL C 1.2 (common.cl found with
# -Icl) for each vector width the host passes (default_vector_width in
# src/runtime/context.c: 4, 8, 16), and pool.cl / conv3d.cl for each
# POOL_KIND / ROWS, which select code (a,b: both at once).  Warnings are errors.
CLANG_CL     ?= clang
CHECK_CL_VEC := 4 8 16
check-cl:
	@for f in $(CL_SRC); do \
	  case $$f in \
	    cl/pool.cl) defs="POOL_KIND=0 POOL_KIND=1 POOL_KIND=2 GCR=8" ;; \
	    cl/conv3d.cl) defs="ROWS=1 ROWS=2 ROWS=3 ROWS=4 PCOB=4 MARCH=16,CO=1,COB=1,ROWS=4" ;; \
	    *) defs="" ;; \
	  esac; \
	  for v in $(CHECK_CL_VEC); do for d in $${defs:-""}; do \
	    $(CLANG_CL) -x cl -cl-std=CL1.2 -Xclang -finclude-default-header -Icl -fsyntax-only -Werror \
	      -DVEC=$$v $${d:+-D$$(echo $$d | sed 's/,/ -D/g')} $$f || { echo "check-cl: $$f failed with -DVEC=$$v $${d:+-D$$d}"; exit 1; }; \
	  done; done; \
	  echo "check-cl: $$f ok (VEC $(CHECK_CL_VEC)$${defs:+; $$defs})"; \
	done

# OpenCL drivers keep allocations until exit, so leak reports are off; every
# other ASan/UBSan finding fails the run.
asan:
	$(MAKE) -j$$(nproc) BUILD=build-asan OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build-asan/neurofv build-asan/neurofv-tests
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  NEUROFV_BIN=$(CURDIR)/build-asan/neurofv build-asan/neurofv-tests $(ASAN_TESTS)

# The whole-job benchmark next to PyTorch on the same machine in one
# invocation (tools/bench_side_by_side.py: neurofv bench --json, then
# tools/bench_torch.py --json, then the table with ratios).  Not a test.
# BENCH_ARGS, e.g. "--reps 3 --no-cold" or "--no-torch".
BENCH_ARGS ?=
bench: all
	$(PYTHON) tools/bench_side_by_side.py --neurofv $(CURDIR)/$(BIN) $(BENCH_ARGS)

# The README's main job: dependencies, build, synthetic cohort, training, eval,
# feature visualization and the regularization comparison, with stage times;
# DEMO=quick for the small version.  Report: demo/report/index.html.
demo:
	DEMO=$(DEMO) bash tools/demo.sh

# PyTorch -> ONNX -> neurofv: synth a 4 mm lesion cohort, train MONAI's ResNet-10 layout in PyTorch,
# export ONNX, import, check neurofv's eval against torch's test accuracy, visualize logits and an
# inner block; summary in $(DIR)/summary.txt, two pictures in docs/.
onnx-demo: DIR ?= demo-onnx
onnx-demo: $(BIN)
	NEUROFV=$(CURDIR)/$(BIN) PYTHON=$(PYTHON) bash tools/onnx_workflow.sh $(DIR)

clean:
	rm -rf build build-asan neurofv
