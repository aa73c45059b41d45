#!/usr/bin/env bash
# Build CPU-only BVLC Caffe 1.0.0-rc3 (PyPI sdist brocolli-caffe 9.0.2) with
# pycaffe, once, into a cache folder keyed by everything that affects the build,
# then wire it into the kit's venv (a .pth file and links in .venv/bin).
#
# Usage: caffe_build/build_caffe.sh VENV_DIR
#   CAFFE_ROOT=/path   use an existing Caffe build instead of building one
#   CAFFE_CACHE=/path  cache folder (default ~/.cache/transfer-kit/caffe)
#   CAFFE_OPENCV=1     the OpenCV variant (Debian's OpenCV 4.6: core, imgproc,
#                      imgcodecs; caffe_build/patches/opencv/*.patch too): adds
#                      convert_imageset and encoded (JPEG) Datums. Its root is
#                      also recorded in VENV/caffe_opencv_root. CAFFE_OPENCV=0:
#                      the plain variant; unset: the variant wired now.
#   CAFFE_WIRE=0       build (or find) the variant but leave the venv's wiring
#                      alone; the root is printed on stdout
#   CAFFE_REFERENCE=1  the kit's build before its speed work (Debian's OpenBLAS,
#                      -O2, no caffe_build/patches/speed): never wired, its root is
#                      recorded in VENV/caffe_reference_root; `make bench` and
#                      the equivalence test compare the fast build with it
#   CUDA=1             GPU Caffe (caffe_build/patches/cuda/*.patch too): toolkit, cuBLAS,
#                      cuRAND and cuDNN found by caffe_build/cuda_toolkit.py (CUDA_HOME,
#                      nvcc on PATH, NVIDIA's wheels; CUDA_ARCH="80 90", CUDNN=0|1,
#                      CUDNN_HOME); ROOT/.kit-cuda records what it found. CUDA=0: the
#                      CPU build; unset: the device of the build wired now.
#   CAFFE_HOST_PREFIX=/p  glog, gflags, protobuf, boost, hdf5, lmdb and OpenBLAS from
#                      a folder of unpacked .deb files (caffe_build/host_prefix.sh), not /usr
#   DNNL=1             the CPU layers (Convolution, InnerProduct, Pooling, LRN,
#                      ReLU) on oneDNN: caffe_build/patches/dnnl/*.patch and the
#                      library of the venv's onednn-cpu-gomp wheel (requirements.txt),
#                      copied into ROOT/build/lib. DNNL=0: Caffe's own CPU code.
#                      Unset: the engine of the build wired now (oneDNN on a fresh
#                      venv). Only the fast CPU build with pycaffe takes it; where
#                      oneDNN cannot run (not x86-64, no SSE4.1) it says so in one
#                      line and builds DNNL=0. ROOT/.kit-engine: "DNNL" or "CAFFE"
#                      (and ROOT/.kit-engine-why: the reason for CAFFE).
#   CAFFE_PYCAFFE=0    no pycaffe (nor the venv's BLAS wheel: Debian's OpenBLAS)
#   CAFFE_SDIST=/f     the pinned sdist from this file instead of PyPI
#   CAFFE_KEY_ONLY=1   print the cache folder this build would have (or has) and stop
# VENV_DIR "-" means no venv (python3 on PATH; implies CAFFE_PYCAFFE=0 and
# CAFFE_WIRE=0): how bench/gpu_check.sh builds on a machine without the kit's venv.
# Each build writes ROOT/.kit-variant: "opencv" or "plain", ROOT/.kit-speed:
# "fast" or "reference", and ROOT/.kit-device: "cpu" or "cuda".
#
# The fast build links the current OpenBLAS of PyPI's scipy-openblas32 wheel
# (pinned in requirements.txt; its symbols carry a scipy_ prefix, mapped back to
# the CBLAS names by a generated cblas.h), copied into ROOT/build/lib, and
# applies caffe_build/patches/speed/*.patch (-O3, vectorised layers, several images
# per convolution GEMM). Debian bookworm's OpenBLAS 0.3.21 falls back to its
# Prescott kernels on recent Intel cores; the wheel's picks the CPU's own.
# OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS, where set, are obeyed by both.
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAFFE_PYCAFFE=${CAFFE_PYCAFFE:-1}
if [ "${1:?usage: build_caffe.sh VENV_DIR (or - for none)}" = - ]; then
  VENV=""; PY=$(command -v python3) || { echo "error: no python3 on PATH; fix: put one on PATH" >&2; exit 1; }
  CAFFE_PYCAFFE=0; CAFFE_WIRE=0
else
  VENV=$(cd "$1" && pwd)
  PY="$VENV/bin/python"
fi
SDIST_NAME=brocolli-caffe
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
CACHE=${CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer-kit/caffe}
TOOLS=(caffe compute_image_mean upgrade_net_proto_text upgrade_solver_proto_text)
OPTIONAL_TOOLS=(convert_imageset)  # linked only from a build that has them working
CAFFE_WIRE=${CAFFE_WIRE:-1}
wired_flag() {  # wired_flag FILE VALUE: the wired build's ROOT/FILE says VALUE
  [ "$CAFFE_WIRE" != 0 ] && [ -z "${CAFFE_ROOT:-}" ] && [ -f "$VENV/caffe_root" ] \
    && [ "$(cat "$(cat "$VENV/caffe_root")/$1" 2>/dev/null)" = "$2" ]
}
if [ -z "${CUDA:-}" ]; then  # not given: keep the device wired now (cpu on a fresh venv)
  CUDA=0
  if wired_flag .kit-device cuda; then
    CUDA=1
    echo "keeping the CUDA Caffe build wired into $VENV (CUDA=0 switches back to the CPU one)" >&2
  fi
fi
case "$CUDA" in
  1) DEVICE=cuda ;;
  0) DEVICE=cpu ;;
  *) echo "error: CUDA=$CUDA; fix: CUDA=1 (GPU build) or CUDA=0 (CPU build)" >&2; exit 1 ;;
esac
case "$CAFFE_PYCAFFE" in
  0|1) ;;
  *) echo "error: CAFFE_PYCAFFE=$CAFFE_PYCAFFE; fix: CAFFE_PYCAFFE=1 or 0" >&2; exit 1 ;;
esac
if [ -z "${CAFFE_OPENCV:-}" ]; then  # not given: keep the variant wired now (plain on a fresh venv)
  CAFFE_OPENCV=0
  if wired_flag .kit-variant opencv; then
    CAFFE_OPENCV=1
    echo "keeping the OpenCV Caffe variant wired into $VENV (CAFFE_OPENCV=0 switches back to the plain one)" >&2
  fi
fi
case "$CAFFE_OPENCV" in
  1) VARIANT=opencv; TOOLS+=(convert_imageset) ;;
  0|"") VARIANT=plain ;;
  *) echo "error: CAFFE_OPENCV=$CAFFE_OPENCV; fix: CAFFE_OPENCV=1 or 0" >&2; exit 1 ;;
esac
CAFFE_REFERENCE=${CAFFE_REFERENCE:-0}
case "$CAFFE_REFERENCE" in
  1) SPEED=reference; CAFFE_WIRE=0 ;;
  0) SPEED=fast ;;
  *) echo "error: CAFFE_REFERENCE=$CAFFE_REFERENCE; fix: CAFFE_REFERENCE=1 or 0" >&2; exit 1 ;;
esac
if [ -z "${DNNL:-}" ]; then  # not given: keep the engine wired now (oneDNN on a fresh venv)
  DNNL=1
  if wired_flag .kit-engine CAFFE && ! wired_flag .kit-device cuda; then
    DNNL=0
    echo "keeping Caffe's own CPU layers wired into $VENV (DNNL=1 switches to oneDNN)" >&2
  fi
fi
case "$DNNL" in
  0|1) ;;
  *) echo "error: DNNL=$DNNL; fix: DNNL=1 (oneDNN CPU layers) or DNNL=0 (Caffe's own)" >&2; exit 1 ;;
esac
ENGINE_WHY="DNNL=0"  # why a build runs Caffe's own CPU layers: ROOT/.kit-engine-why (the tests' skip reason)
if [ "$SPEED" = reference ] || [ "$DEVICE" = cuda ] || [ "$CAFFE_PYCAFFE" = 0 ]; then
  # the reference build is the kit's before its speed work; the GPU build is unchanged
  if [ "$DNNL" = 1 ]; then
    ENGINE_WHY="the $SPEED $DEVICE build never uses oneDNN"
    [ "$CAFFE_PYCAFFE" = 0 ] && ENGINE_WHY="a build without pycaffe (nor the venv's oneDNN) never uses oneDNN"
  fi
  DNNL=0
elif [ "$DNNL" = 1 ]; then
  CPUINFO=${CAFFE_CPUINFO:-/proc/cpuinfo}  # the CPU description the check reads (a test gives another)
  if [ "$(uname -m)" != x86_64 ]; then ENGINE_WHY="PyPI's oneDNN is built for x86-64, this machine is $(uname -m)"
  elif ! grep -qw sse4_1 "$CPUINFO" 2>/dev/null; then ENGINE_WHY="this CPU lacks SSE4.1, the least oneDNN runs on"
  else ENGINE_WHY=""
  fi
  if [ -n "$ENGINE_WHY" ]; then
    echo "oneDNN cannot run here ($ENGINE_WHY): building Caffe's own CPU layers (as DNNL=0)" >&2
    ENGINE_WHY="oneDNN cannot run here: $ENGINE_WHY"
    DNNL=0
  fi
fi
ENGINE=CAFFE; [ "$DNNL" = 1 ] && ENGINE=DNNL
PATCHES=("$KIT"/caffe_build/patches/base/*.patch)
[ "$SPEED" = fast ] && PATCHES+=("$KIT"/caffe_build/patches/speed/*.patch)
[ "$DNNL" = 1 ] && PATCHES+=("$KIT"/caffe_build/patches/dnnl/*.patch)
[ "$VARIANT" = opencv ] && PATCHES+=("$KIT"/caffe_build/patches/opencv/*.patch)
[ "$DEVICE" = cuda ] && PATCHES+=("$KIT"/caffe_build/patches/cuda/*.patch)

die() { echo "error: $*" >&2; exit 1; }
[ -x "$PY" ] || die "no Python venv at $VENV; fix: make venv"
[ "$DEVICE" = cuda ] && [ "$SPEED" = reference ] && die "CUDA=1 with CAFFE_REFERENCE=1; fix: drop one (the reference build is CPU only)"

wire() {  # wire ROOT into the venv: pycaffe on sys.path, tools on the venv's PATH
  local root=$1 site
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$root/python" > "$site/transfer_kit_caffe.pth.tmp"
  mv "$site/transfer_kit_caffe.pth.tmp" "$site/transfer_kit_caffe.pth"
  for t in "${OPTIONAL_TOOLS[@]}"; do  # no stale links from another variant
    [ -L "$VENV/bin/$t" ] && rm -f "$VENV/bin/$t"
  done
  for t in "${TOOLS[@]}"; do
    ln -sfn "$root/build/tools/$t" "$VENV/bin/$t"
  done
  echo "$root" > "$VENV/caffe_root"
  GLOG_minloglevel=2 "$PY" -c 'import caffe' \
    || die "pycaffe from $root does not import in $VENV; fix: rebuild with 'make caffe' (or check CAFFE_ROOT)"
}

if [ -n "${CAFFE_ROOT:-}" ]; then
  [ -x "$CAFFE_ROOT/build/tools/caffe" ] \
    || die "CAFFE_ROOT=$CAFFE_ROOT has no build/tools/caffe binary; fix: build it there or unset CAFFE_ROOT"
  ls "$CAFFE_ROOT"/python/caffe/_caffe*.so >/dev/null 2>&1 \
    || die "CAFFE_ROOT=$CAFFE_ROOT has no pycaffe (python/caffe/_caffe.so); fix: run 'make pycaffe' in it or unset CAFFE_ROOT"
  if [ "$CAFFE_WIRE" = 0 ]; then
    [ "$VARIANT" = opencv ] && echo "$(cd "$CAFFE_ROOT" && pwd)" > "$VENV/caffe_opencv_root"
    cd "$CAFFE_ROOT" && pwd
    exit 0
  fi
  wire "$(cd "$CAFFE_ROOT" && pwd)"
  echo "using Caffe at $CAFFE_ROOT" >&2
  exit 0
fi

finish() {  # DEST is built: record it, and wire it unless CAFFE_WIRE=0
  if [ -z "$VENV" ]; then
    :
  elif [ "$SPEED" = reference ]; then
    echo "$DEST" > "$VENV/caffe_reference_root"
  elif [ "$DEVICE" = cuda ]; then
    echo "$DEST" > "$VENV/caffe_cuda_root"
  elif [ "$VARIANT" = opencv ]; then
    echo "$DEST" > "$VENV/caffe_opencv_root"
  elif [ "$ENGINE" = CAFFE ] && [ "$CAFFE_WIRE" = 0 ]; then  # make caffe-nodnnl: the fast build's own layers
    echo "$DEST" > "$VENV/caffe_nodnnl_root"
  fi
  if [ "$CAFFE_WIRE" = 0 ]; then
    echo "$DEST"
  else
    wire "$DEST"
  fi
}

PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
NPVER=none
[ "$CAFFE_PYCAFFE" = 1 ] && NPVER=$("$PY" -c 'import numpy; print(numpy.__version__)')
HOST_KEY=system
KEY_FILES=("$KIT/caffe_build/build_caffe.sh" "${PATCHES[@]}")  # the kit's files a build depends on: only those in its key
if [ -n "${CAFFE_HOST_PREFIX:-}" ]; then
  HOST_ENV=$(bash "$KIT/caffe_build/host_prefix.sh" env "$CAFFE_HOST_PREFIX") || exit 1
  eval "$HOST_ENV"
  HOST_KEY="prefix $(cd "$CAFFE_HOST_PREFIX" && pwd) $(sha256sum < "$CAFFE_HOST_PREFIX/packages.txt" 2>/dev/null | cut -c1-16)"
  KEY_FILES+=("$KIT/caffe_build/host_prefix.sh")
fi
CUDA_KEY=none
if [ "$DEVICE" = cuda ]; then
  KEY_FILES+=("$KIT/caffe_build/cuda_toolkit.py")
  CUDA_ENV=$("$PY" "$KIT/caffe_build/cuda_toolkit.py" resolve "$CACHE") || exit 1
  eval "$CUDA_ENV"
  CUDA_KEY="cuda$CUDA_VERSION archs=$CUDA_ARCHS cudnn=${CUDNN_VERSION:-off} $CUDA_LIBS $CUDA_DIR"
fi
if [ "$SPEED" = fast ] && [ "$CAFFE_PYCAFFE" = 1 ]; then
  BLAS_DIRS=$("$PY" -c 'import scipy_openblas32 as b; print(b.get_include_dir()); print(b.get_lib_dir()); print(b.__version__)') \
    || die "the scipy-openblas32 wheel is not in $VENV; fix: make venv (it is pinned in requirements.txt)"
  { read -r BLAS_INC; read -r BLAS_LIBDIR; read -r BLAS_VERSION; } <<< "$BLAS_DIRS"
  BLAS_KEY="scipy-openblas32-$BLAS_VERSION $(sha256sum "$BLAS_LIBDIR/libscipy_openblas.so" | cut -c1-16)"
else  # Debian's OpenBLAS: the reference build, and builds without the venv's wheel
  BLAS_KEY="debian-openblas $(dpkg-query -W -f='${Version}' libopenblas-dev 2>/dev/null)"
fi
DNNL_KEY=off
if [ "$DNNL" = 1 ]; then
  DNNL_VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("onednn-cpu-gomp"))' 2>/dev/null) \
    && [ -f "$VENV/lib/libdnnl.so.3" ] && [ -f "$VENV/include/oneapi/dnnl/dnnl.hpp" ] \
    || die "the onednn-cpu-gomp wheels are not in $VENV; fix: make venv (they are pinned in requirements.txt), or DNNL=0"
  DNNL_KEY="onednn-cpu-gomp-$DNNL_VERSION $(sha256sum "$VENV/lib/libdnnl.so.3" | cut -c1-16)"
fi
KEY=$( { echo "$SDIST_SHA256 py$PYVER numpy$NPVER pycaffe=$CAFFE_PYCAFFE variant=$VARIANT speed=$SPEED blas=$BLAS_KEY dnnl=$DNNL_KEY device=$DEVICE $CUDA_KEY host=$HOST_KEY"
         cat "${KEY_FILES[@]}"; } | sha256sum | cut -c1-16)
DEST="$CACHE/$KEY"
if [ "${CAFFE_KEY_ONLY:-0}" = 1 ]; then echo "$DEST"; exit 0; fi

if [ "$VARIANT" = opencv ] && [ ! -f /usr/include/opencv4/opencv2/imgcodecs.hpp ]; then
  die "CAFFE_OPENCV=1 needs Debian's OpenCV headers; fix: make system CAFFE_OPENCV=1 (or: apt-get install --no-install-recommends libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)"
fi

if [ -f "$DEST/.kit-build-complete" ]; then
  finish
  echo "Caffe ($VARIANT, $DEVICE) already built: $DEST" >&2
  exit 0
fi

mkdir -p "$CACHE/sdist"
TARBALL="${CAFFE_SDIST:-$CACHE/sdist/$SDIST_NAME-$SDIST_VERSION.tar.gz}"
if [ -n "${CAFFE_SDIST:-}" ]; then
  echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --quiet - 2>/dev/null \
    || die "CAFFE_SDIST=$TARBALL is not the pinned $SDIST_NAME $SDIST_VERSION sdist (sha256); fix: point it at that file or unset it"
elif [ ! -f "$TARBALL" ] || ! echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --quiet - 2>/dev/null; then
  DL=$(mktemp -d "$CACHE/sdist/.dl.XXXXXX")
  "$PY" -m pip download -q --no-deps --no-binary :all: "$SDIST_NAME==$SDIST_VERSION" -d "$DL" \
    || die "could not download $SDIST_NAME==$SDIST_VERSION from PyPI; fix: check the network or put the sdist at $TARBALL"
  echo "$SDIST_SHA256  $DL/$SDIST_NAME-$SDIST_VERSION.tar.gz" | sha256sum -c --quiet - \
    || die "sha256 of the downloaded $SDIST_NAME sdist is not the pinned one; fix: check the download"
  mv "$DL/$SDIST_NAME-$SDIST_VERSION.tar.gz" "$TARBALL"
  rm -rf "$DL"
fi

WORK=$(mktemp -d "$CACHE/.build-$KEY.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
tar xzf "$TARBALL" -C "$WORK" --strip-components=1
cd "$WORK"
# Defect 1: generated protobuf files made by an old protoc ship with the sdist
# and are as new as caffe.proto, so make would keep them: delete them.
rm -f include/caffe/proto/caffe.pb.h src/caffe/proto/caffe.pb.cc python/caffe/proto/caffe_pb2.py
find python -name __pycache__ -type d -prune -exec rm -rf {} +
# Defects 2-6: the kit's patch files (and, for CAFFE_OPENCV=1, caffe_build/patches/opencv).
for p in "${PATCHES[@]}"; do
  patch -p1 -s --no-backup-if-mismatch < "$p" || die "patch $(basename "$p") does not apply"
done

BLAS_CFG="BLAS := open"
if [ "$SPEED" = fast ] && [ "$CAFFE_PYCAFFE" = 1 ]; then
  # The wheel's headers under kit_blas/include/scipy_openblas32 and a cblas.h
  # that maps every standard cblas_* name Caffe calls to the wheel's scipy_cblas_*.
  mkdir -p kit_blas/include kit_blas/lib
  cp -r "$BLAS_INC" kit_blas/include/scipy_openblas32
  cp "$BLAS_LIBDIR/libscipy_openblas.so" kit_blas/lib/
  {
    echo "/* Written by the kit's caffe_build/build_caffe.sh: the CBLAS names of scipy-openblas32 $BLAS_VERSION. */"
    echo "#ifndef KIT_SCIPY_OPENBLAS_CBLAS_H_"
    echo "#define KIT_SCIPY_OPENBLAS_CBLAS_H_"
    echo "#include \"scipy_openblas32/cblas.h\""
    grep -o 'scipy_cblas_[A-Za-z0-9_]*' "$BLAS_INC/cblas.h" | sort -u | sed 's/^scipy_\(.*\)$/#define \1 scipy_\1/'
    echo "#endif"
  } > kit_blas/include/cblas.h
  grep -q '^#define cblas_sgemm scipy_cblas_sgemm$' kit_blas/include/cblas.h \
    || die "scipy-openblas32 $BLAS_VERSION's cblas.h has no scipy_cblas_sgemm; fix: check the pin in requirements.txt"
  BLAS_CFG="BLAS := open
OPENBLAS_LIB_NAME := scipy_openblas
BLAS_INCLUDE := kit_blas/include
BLAS_LIB := kit_blas/lib"
fi
DNNL_CFG=""
if [ "$DNNL" = 1 ]; then
  # Like kit_blas/: the wheel's headers and library inside the tree, which stays movable;
  # caffe_build/patches/dnnl/01's Makefile copies libdnnl.so.3 next to libcaffe (build/lib).
  mkdir -p kit_dnnl/lib kit_dnnl/include
  cp -r "$VENV/include/oneapi" kit_dnnl/include/
  cp "$VENV/lib/libdnnl.so.3" kit_dnnl/lib/
  ln -s libdnnl.so.3 kit_dnnl/lib/libdnnl.so
  DNNL_CFG="USE_DNNL := 1
DNNL_INCLUDE := kit_dnnl/include
DNNL_LIB := kit_dnnl/lib"
fi
MULTIARCH=$(gcc -print-multiarch)
if [ "$CAFFE_PYCAFFE" = 1 ]; then
  PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
  PYLIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
  PYTHON_CFG="PYTHON_INCLUDE := $PYINC $NPINC
PYTHON_LIB := $PYLIB
PYTHON_LIBRARIES := boost_python${PYVER/./}"
else
  PYTHON_CFG="PYTHON_INCLUDE :=
PYTHON_LIB :="
fi
DEVICE_CFG="CPU_ONLY := 1"
EXTRA_INC=""; EXTRA_LIB=""; RPATHS=(); LINK_CFG=""
if [ -n "${CAFFE_HOST_PREFIX:-}" ]; then
  # DT_RPATH (not RUNPATH) so that the prefix also serves the libraries' own
  # dependencies (hdf5's libcurl); --as-needed drops boost_regex's unused ICU.
  EXTRA_INC="$HOST_INCLUDE_DIRS"; EXTRA_LIB="$HOST_LIBRARY_DIRS"; LINK_CFG=" $HOST_LDFLAGS -Wl,--disable-new-dtags"
  read -ra RPATHS <<< "$HOST_LIBRARY_DIRS"
fi
if [ "$DEVICE" = cuda ]; then
  # CUDA 13's Thrust and CUB (CCCL 3) need C++17; Caffe's code compiles as C++17 (gcc's default)
  DEVICE_CFG="CUDA_DIR := $CUDA_DIR
CUDA_ARCH := $CUDA_ARCH_FLAGS
NVCCFLAGS += -std=c++17
$( [ -n "$CUDNN_VERSION" ] && echo "USE_CUDNN := 1")"
  EXTRA_INC="$CUDA_INCLUDE_DIRS $EXTRA_INC"; EXTRA_LIB="$CUDA_LINK_DIR $EXTRA_LIB"
  read -ra cuda_rpath <<< "$CUDA_RPATH"
  RPATHS+=("${cuda_rpath[@]}")
  printf '%s\n' "$CUDA_ENV" > .kit-cuda
fi
RPATH_CFG="$LINK_CFG"
for d in "${RPATHS[@]}"; do RPATH_CFG+=" -Wl,-rpath,$d"; done
if [ "$VARIANT" = opencv ]; then
  OPENCV_CFG="USE_OPENCV := 1
OPENCV_VERSION := 3"
  OPENCV_INC=" /usr/include/opencv4"
else
  OPENCV_CFG="USE_OPENCV := 0"
  OPENCV_INC=""
fi
cat > Makefile.config <<CFG
# Written by the kit's caffe_build/build_caffe.sh (see ../shared/CAFFE_NOTES.md).
$DEVICE_CFG
$OPENCV_CFG
USE_LEVELDB := 0
USE_LMDB := 1
$BLAS_CFG
$DNNL_CFG
$PYTHON_CFG
INCLUDE_DIRS := \$(PYTHON_INCLUDE) $EXTRA_INC /usr/local/include /usr/include/hdf5/serial$OPENCV_INC
LIBRARY_DIRS := \$(PYTHON_LIB) $EXTRA_LIB /usr/local/lib /usr/lib /usr/lib/$MULTIARCH/hdf5/serial
LDFLAGS +=$RPATH_CFG
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CFG

TARGETS=(all); [ "$CAFFE_PYCAFFE" = 1 ] && TARGETS+=(pycaffe)
if [ "$DEVICE" = cuda ]; then
  echo "building Caffe ($VARIANT, CUDA $CUDA_VERSION for sm_${CUDA_ARCHS// /, sm_}, cuDNN ${CUDNN_VERSION:-off}) into $DEST (about $CUDA_BUILD_MINUTES minutes on 2 cores; log: $WORK/build.log)" >&2
else
  echo "building Caffe ($VARIANT, $SPEED, $ENGINE layers) into $DEST (about 8 minutes on 2 cores; log: $WORK/build.log)" >&2
fi
start=$(date +%s)
BUILD_PATH=$PATH; BUILD_LD=${LD_LIBRARY_PATH:-}
if [ -n "${CAFFE_HOST_PREFIX:-}" ]; then  # the prefix's protoc, and the libraries it runs with
  BUILD_PATH="$(dirname "$HOST_PROTOC"):$PATH"; BUILD_LD="$HOST_LD_LIBRARY_PATH${BUILD_LD:+:$BUILD_LD}"
fi
# Caffe's own make without the caller's MAKEFLAGS: `make caffe CUDA_ARCH="80 90"` would
# otherwise override Caffe's CUDA_ARCH (its -gencode flags) with the bare numbers.
if ! PATH=$BUILD_PATH LD_LIBRARY_PATH=$BUILD_LD env -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES -u MAKELEVEL \
     make -j"$(nproc)" "${TARGETS[@]}" > build.log 2>&1; then
  tail -30 build.log >&2
  cp build.log "$CACHE/failed-build-$KEY.log"
  die "Caffe build failed; full log: $CACHE/failed-build-$KEY.log"
fi
if [ -f kit_blas/lib/libscipy_openblas.so ]; then  # found by libcaffe's RUNPATH ($ORIGIN); the tree stays movable
  cp kit_blas/lib/libscipy_openblas.so build/lib/
fi
echo "$DEVICE" > .kit-device
echo "$VARIANT" > .kit-variant
echo "$SPEED" > .kit-speed
echo "$ENGINE" > .kit-engine
[ "$ENGINE" = CAFFE ] && echo "$ENGINE_WHY" > .kit-engine-why
touch .kit-build-complete
cd /
if ! mv -T "$WORK" "$DEST" 2>/dev/null; then
  [ -f "$DEST/.kit-build-complete" ] || die "could not move the build to $DEST"
fi
trap - EXIT
echo "Caffe ($VARIANT, $DEVICE) built in $(( $(date +%s) - start )) s: $DEST" >&2
finish
