#!/usr/bin/env bash
# Build (once, incrementally, inside the build tree) and run Caffe's own unit
# tests of the layer types and math the kit's nets use, in a kit Caffe build.
# They ship with the sdist and include gradient checks; the kit runs them to
# prove that its BLAS and compiler flags (caffe_build/patches/speed) compute what
# BVLC's code computes.
#
# Usage: caffe_build/unit_tests.sh ROOT [TEST ...]
#   ROOT   a finished kit build (ROOT/.kit-build-complete)
#   TEST   test sources without .cpp (default: the list below)
# Prints one line per binary ("test_x: N tests passed"); exits 1 on a failure
# (its gtest output on stderr). CAFFE_TEST_FILTER= passes --gtest_filter.
set -euo pipefail
ROOT=${1:?usage: unit_tests.sh ROOT [TEST ...]}
shift
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
  # Convolution, InnerProduct, Pooling (max), LRN, ReLU and Dropout (neuron),
  # SoftmaxWithLoss, Accuracy, im2col, the BLAS wrappers, SyncedMemory (with the
  # oneDNN layouts it may hold, on a oneDNN build). The Data layer's
  # tests (test_data_layer) are compiled only with OpenCV: run them on the
  # OpenCV variant (make caffe-opencv), which has the same BLAS and patches.
  TESTS=(test_convolution_layer test_inner_product_layer test_pooling_layer test_lrn_layer
         test_neuron_layer test_maxpool_dropout_layers test_softmax_with_loss_layer
         test_accuracy_layer test_im2col_layer test_math_functions test_syncedmem)
fi
die() { echo "error: $*" >&2; exit 1; }
[ -f "$ROOT/.kit-build-complete" ] || die "$ROOT is not a finished kit Caffe build; fix: make caffe"
# On the oneDNN build the float transpose tests of InnerProduct compare oneDNN's product (transpose: false)
# with Caffe's GEMM (transpose: true, which oneDNN does not take) to 4 ULPs, on data from an unseeded filler:
# two summation orders, which some draws separate by more (seen once, on an Intel Xeon). They are
# left out there unless CAFFE_TEST_FILTER says otherwise; their double versions, GEMM on both sides, still run.
if [ -z "${CAFFE_TEST_FILTER:-}" ] && [ "$(cat "$ROOT/.kit-engine" 2>/dev/null)" = DNNL ]; then
  CAFFE_TEST_FILTER="-InnerProductLayerTest/0.TestForwardTranspose:InnerProductLayerTest/0.TestBackwardTranspose"
fi
cd "$ROOT"
# the Makefile's own name of the test folder (BUILD_DIR resolves to .build_release; build/ links to it)
TEST_BIN_DIR=$(make -np 2>/dev/null | sed -n 's/^TEST_BIN_DIR := //p' | head -1)
[ -n "$TEST_BIN_DIR" ] || die "cannot read TEST_BIN_DIR from $ROOT/Makefile; fix: rebuild with make caffe"
bins=()
for t in "${TESTS[@]}"; do
  [ -f "src/caffe/test/$t.cpp" ] || die "Caffe has no test $t (src/caffe/test/$t.cpp); fix: name one of src/caffe/test/test_*.cpp"
  bins+=("$TEST_BIN_DIR/$t.testbin")
done
if ! env -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES -u MAKELEVEL \
     make -j"$(nproc)" "${bins[@]}" > unit-tests-build.log 2>&1; then  # not the caller's make variables
  tail -30 unit-tests-build.log >&2
  die "building Caffe's unit tests failed; full log: $ROOT/unit-tests-build.log"
fi
failed=0
for t in "${TESTS[@]}"; do
  log=$(mktemp)
  if GLOG_logtostderr=1 GLOG_minloglevel=2 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
       "$TEST_BIN_DIR/$t.testbin" ${CAFFE_TEST_FILTER:+--gtest_filter="$CAFFE_TEST_FILTER"} > "$log" 2>&1; then
    passed=$(grep -oE '\[  PASSED  \] [0-9]+ tests?' "$log" | grep -oE '[0-9]+' || true)
    if [ "${passed:-0}" -gt 0 ]; then
      echo "$t: $passed tests passed"
    else  # compiled out in this build (e.g. test_data_layer without OpenCV): nothing was checked
      echo "$t: FAILED: it ran no test in this build (see #ifdef in src/caffe/test/$t.cpp)" >&2
      failed=1
    fi
  else
    echo "$t: FAILED" >&2
    grep -E '^\[  FAILED  \]|Failure|Expected|Which is|Check failed' "$log" | head -40 >&2
    failed=1
  fi
  rm -f "$log"
done
exit $failed
