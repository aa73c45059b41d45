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
# Each build writes ROOT/.kit-variant: "opencv" or "plain".
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
PATCHES=("$KIT"/runner/patches/*.patch)
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
  [ "$VARIANT" = opencv ] && echo "$DEST" > "$VENV/caffe_opencv_root"
  if [ "$CAFFE_WIRE" = 0 ]; then
    echo "$DEST"
  else
    wire "$DEST"
  fi
}

PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
NPVER=$("$PY" -c 'import numpy; print(numpy.__version__)')
KEY=$( { echo "$SDIST_SHA256 py$PYVER numpy$NPVER variant=$VARIANT"; cat "$KIT/runner/build_caffe.sh" "${PATCHES[@]}"; } | sha256sum | cut -c1-16)
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
BLAS := open
PYTHON_INCLUDE := $PYINC $NPINC
PYTHON_LIB := $PYLIB
PYTHON_LIBRARIES := boost_python${PYVER/./}
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial$OPENCV_INC
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/$MULTIARCH/hdf5/serial
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CFG

echo "building Caffe ($VARIANT) into $DEST (about 8 minutes on 2 cores; log: $WORK/build.log)" >&2
start=$(date +%s)
if ! make -j"$(nproc)" all pycaffe > build.log 2>&1; then
  tail -30 build.log >&2
  cp build.log "$CACHE/failed-build-$KEY.log"
  die "Caffe build failed; full log: $CACHE/failed-build-$KEY.log"
fi
echo "$VARIANT" > .kit-variant
touch .kit-build-complete
cd /
if ! mv -T "$WORK" "$DEST" 2>/dev/null; then
  [ -f "$DEST/.kit-build-complete" ] || die "could not move the build to $DEST"
fi
trap - EXIT
echo "Caffe ($VARIANT) built in $(( $(date +%s) - start )) s: $DEST" >&2
finish
