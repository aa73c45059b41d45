#!/usr/bin/env bash
# Build CPU-only BVLC Caffe 1.0.0-rc3 (PyPI sdist brocolli-caffe 9.0.2) with
# pycaffe, once, into a cache folder keyed by everything that affects the build,
# then wire it into the kit's venv (a .pth file and links in .venv/bin).
#
# Usage: runner/build_caffe.sh VENV_DIR
#   CAFFE_ROOT=/path   use an existing Caffe build instead of building one
#   CAFFE_CACHE=/path  cache folder (default ~/.cache/transfer-kit/caffe)
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(cd "${1:?usage: build_caffe.sh VENV_DIR}" && pwd)
PY="$VENV/bin/python"
SDIST_NAME=brocolli-caffe
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
CACHE=${CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer-kit/caffe}
TOOLS=(caffe compute_image_mean upgrade_net_proto_text upgrade_solver_proto_text)

die() { echo "error: $*" >&2; exit 1; }
[ -x "$PY" ] || die "no Python venv at $VENV; fix: make venv"

wire() {  # wire ROOT into the venv: pycaffe on sys.path, tools on the venv's PATH
  local root=$1 site
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$root/python" > "$site/transfer_kit_caffe.pth.tmp"
  mv "$site/transfer_kit_caffe.pth.tmp" "$site/transfer_kit_caffe.pth"
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
  wire "$(cd "$CAFFE_ROOT" && pwd)"
  echo "using Caffe at $CAFFE_ROOT" >&2
  exit 0
fi

PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
NPVER=$("$PY" -c 'import numpy; print(numpy.__version__)')
KEY=$( { echo "$SDIST_SHA256 py$PYVER numpy$NPVER"; cat "$KIT/runner/build_caffe.sh" "$KIT"/runner/patches/*.patch; } | sha256sum | cut -c1-16)
DEST="$CACHE/$KEY"

if [ -f "$DEST/.kit-build-complete" ]; then
  wire "$DEST"
  echo "Caffe already built: $DEST" >&2
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
# Defects 2-5: the kit's patch files.
for p in "$KIT"/runner/patches/*.patch; do
  patch -p1 -s --no-backup-if-mismatch < "$p" || die "patch $(basename "$p") does not apply"
done

PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
PYLIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
MULTIARCH=$(gcc -print-multiarch)
cat > Makefile.config <<CFG
# Written by the kit's runner/build_caffe.sh (see ../shared/CAFFE_NOTES.md).
CPU_ONLY := 1
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 1
BLAS := open
PYTHON_INCLUDE := $PYINC $NPINC
PYTHON_LIB := $PYLIB
PYTHON_LIBRARIES := boost_python${PYVER/./}
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/$MULTIARCH/hdf5/serial
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CFG

echo "building Caffe into $DEST (about 8 minutes on 2 cores; log: $WORK/build.log)" >&2
start=$(date +%s)
if ! make -j"$(nproc)" all pycaffe > build.log 2>&1; then
  tail -30 build.log >&2
  cp build.log "$CACHE/failed-build-$KEY.log"
  die "Caffe build failed; full log: $CACHE/failed-build-$KEY.log"
fi
touch .kit-build-complete
cd /
if ! mv -T "$WORK" "$DEST" 2>/dev/null; then
  [ -f "$DEST/.kit-build-complete" ] || die "could not move the build to $DEST"
fi
trap - EXIT
echo "Caffe built in $(( $(date +%s) - start )) s: $DEST" >&2
wire "$DEST"
