#!/usr/bin/env bash
# Build CPU-only BVLC Caffe 1.0.0-rc3 (PyPI sdist brocolli-caffe 9.0.2) with
# pycaffe, once, into a cache folder keyed by everything that affects the build,
# then wire it into the kit's venv (a .pth file and links in .venv/bin).
#
# Usage: runner/build_caffe.sh VENV_DIR
#   CAFFE_ROOT=/path   use an existing Caffe build instead of building one
#   CAFFE_CACHE=/path  cache folder (default ~/.cache/transfer-kit/caffe)
#   CAFFE_OPENCV=1     the OpenCV variant (Debian's OpenCV 4.6: core, imgproc,
#                      imgcodecs; runner/patches/opencv/*.patch too): adds
#                      convert_imageset and encoded (JPEG) Datums. Its root is
#                      also recorded in VENV/caffe_opencv_root. CAFFE_OPENCV=0:
#                      the plain variant; unset: the variant wired now.
#   CAFFE_WIRE=0       build (or find) the variant but leave the venv's wiring
#                      alone; the root is printed on stdout
#   CAFFE_REFERENCE=1  the kit's build before its speed work (Debian's OpenBLAS,
#                      -O2, no runner/patches/speed): never wired, its root is
#                      recorded in VENV/caffe_reference_root; `make bench` and
#                      the equivalence test compare the fast build with it
# Each build writes ROOT/.kit-variant: "opencv" or "plain", and ROOT/.kit-speed:
# "fast" or "reference".
#
# The fast build links the current OpenBLAS of PyPI's scipy-openblas32 wheel
# (pinned in requirements.txt; its symbols carry a scipy_ prefix, mapped back to
# the CBLAS names by a generated cblas.h), copied into ROOT/build/lib, and
# applies runner/patches/speed/*.patch (-O3, vectorised layers, several images
# per convolution GEMM). Debian bookworm's OpenBLAS 0.3.21 falls back to its
# Prescott kernels on recent Intel cores; the wheel's picks the CPU's own.
# OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS, where set, are obeyed by both.
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "${1:?usage: build_caffe.sh VENV_DIR}" && pwd)
PY="$VENV/bin/python"
SDIST_NAME=brocolli-caffe
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
CACHE=${CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer-kit/caffe}
TOOLS=(caffe compute_image_mean upgrade_net_proto_text upgrade_solver_proto_text)
OPTIONAL_TOOLS=(convert_imageset)  # linked only from a build that has them working
CAFFE_WIRE=${CAFFE_WIRE:-1}
if [ -z "${CAFFE_OPENCV:-}" ]; then  # not given: keep the variant wired now (plain on a fresh venv)
  CAFFE_OPENCV=0
  if [ "$CAFFE_WIRE" != 0 ] && [ -z "${CAFFE_ROOT:-}" ] && [ -f "$VENV/caffe_root" ] \
     && [ "$(cat "$(cat "$VENV/caffe_root")/.kit-variant" 2>/dev/null)" = opencv ]; then
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
PATCHES=("$KIT"/runner/patches/*.patch)
[ "$SPEED" = fast ] && PATCHES+=("$KIT"/runner/patches/speed/*.patch)
[ "$VARIANT" = opencv ] && PATCHES+=("$KIT"/runner/patches/opencv/*.patch)

die() { echo "error: $*" >&2; exit 1; }
[ -x "$PY" ] || die "no Python venv at $VENV; fix: make venv"

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
  if [ "$SPEED" = reference ]; then
    echo "$DEST" > "$VENV/caffe_reference_root"
  elif [ "$VARIANT" = opencv ]; then
    echo "$DEST" > "$VENV/caffe_opencv_root"
  fi
  if [ "$CAFFE_WIRE" = 0 ]; then
    echo "$DEST"
  else
    wire "$DEST"
  fi
}

PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
NPVER=$("$PY" -c 'import numpy; print(numpy.__version__)')
if [ "$SPEED" = fast ]; then
  BLAS_DIRS=$("$PY" -c 'import scipy_openblas32 as b; print(b.get_include_dir()); print(b.get_lib_dir()); print(b.__version__)') \
    || die "the scipy-openblas32 wheel is not in $VENV; fix: make venv (it is pinned in requirements.txt)"
  { read -r BLAS_INC; read -r BLAS_LIBDIR; read -r BLAS_VERSION; } <<< "$BLAS_DIRS"
  BLAS_KEY="scipy-openblas32-$BLAS_VERSION $(sha256sum "$BLAS_LIBDIR/libscipy_openblas.so" | cut -c1-16)"
else
  BLAS_KEY="debian-openblas $(dpkg-query -W -f='${Version}' libopenblas-dev 2>/dev/null)"
fi
KEY=$( { echo "$SDIST_SHA256 py$PYVER numpy$NPVER variant=$VARIANT speed=$SPEED blas=$BLAS_KEY"; cat "$KIT/runner/build_caffe.sh" "${PATCHES[@]}"; } | sha256sum | cut -c1-16)
DEST="$CACHE/$KEY"

if [ "$VARIANT" = opencv ] && [ ! -f /usr/include/opencv4/opencv2/imgcodecs.hpp ]; then
  die "CAFFE_OPENCV=1 needs Debian's OpenCV headers; fix: make system CAFFE_OPENCV=1 (or: apt-get install --no-install-recommends libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)"
fi

if [ -f "$DEST/.kit-build-complete" ]; then
  finish
  echo "Caffe ($VARIANT) already built: $DEST" >&2
  exit 0
fi

mkdir -p "$CACHE/sdist"
TARBALL="$CACHE/sdist/$SDIST_NAME-$SDIST_VERSION.tar.gz"
if [ ! -f "$TARBALL" ] || ! echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --quiet - 2>/dev/null; then
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
# Defects 2-6: the kit's patch files (and, for CAFFE_OPENCV=1, runner/patches/opencv).
for p in "${PATCHES[@]}"; do
  patch -p1 -s --no-backup-if-mismatch < "$p" || die "patch $(basename "$p") does not apply"
done

BLAS_CFG="BLAS := open"
if [ "$SPEED" = fast ]; then
  # The wheel's headers under kit_blas/include/scipy_openblas32 and a cblas.h
  # that maps every standard cblas_* name Caffe calls to the wheel's scipy_cblas_*.
  mkdir -p kit_blas/include kit_blas/lib
  cp -r "$BLAS_INC" kit_blas/include/scipy_openblas32
  cp "$BLAS_LIBDIR/libscipy_openblas.so" kit_blas/lib/
  {
    echo "/* Written by the kit's runner/build_caffe.sh: the CBLAS names of scipy-openblas32 $BLAS_VERSION. */"
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
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
PYLIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
MULTIARCH=$(gcc -print-multiarch)
if [ "$VARIANT" = opencv ]; then
  OPENCV_CFG="USE_OPENCV := 1
OPENCV_VERSION := 3"
  OPENCV_INC=" /usr/include/opencv4"
else
  OPENCV_CFG="USE_OPENCV := 0"
  OPENCV_INC=""
fi
cat > Makefile.config <<CFG
# Written by the kit's runner/build_caffe.sh (see ../shared/CAFFE_NOTES.md).
CPU_ONLY := 1
$OPENCV_CFG
USE_LEVELDB := 0
USE_LMDB := 1
$BLAS_CFG
PYTHON_INCLUDE := $PYINC $NPINC
PYTHON_LIB := $PYLIB
PYTHON_LIBRARIES := boost_python${PYVER/./}
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial$OPENCV_INC
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/$MULTIARCH/hdf5/serial
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CFG

echo "building Caffe ($VARIANT, $SPEED) into $DEST (about 8 minutes on 2 cores; log: $WORK/build.log)" >&2
start=$(date +%s)
if ! make -j"$(nproc)" all pycaffe > build.log 2>&1; then
  tail -30 build.log >&2
  cp build.log "$CACHE/failed-build-$KEY.log"
  die "Caffe build failed; full log: $CACHE/failed-build-$KEY.log"
fi
if [ "$SPEED" = fast ]; then  # found by libcaffe's RUNPATH ($ORIGIN); the tree stays movable
  cp kit_blas/lib/libscipy_openblas.so build/lib/
fi
echo "$VARIANT" > .kit-variant
echo "$SPEED" > .kit-speed
touch .kit-build-complete
cd /
if ! mv -T "$WORK" "$DEST" 2>/dev/null; then
  [ -f "$DEST/.kit-build-complete" ] || die "could not move the build to $DEST"
fi
trap - EXIT
echo "Caffe ($VARIANT) built in $(( $(date +%s) - start )) s: $DEST" >&2
finish
