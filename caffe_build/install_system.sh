#!/usr/bin/env bash
# Install the Debian packages the kit needs (Caffe's build and run-time
# libraries, the Fashion-MNIST data package, WordNet 3.0 for ImageNet's
# natural/man-made split, Slurm and munge for the Slurm engine and its tests),
# only when one is missing. With the argument `opencv` or CAFFE_OPENCV=1 also
# OpenCV's core, imgproc and imgcodecs (for `make caffe CAFFE_OPENCV=1`; no
# highgui/videoio, see README).
# Usage: caffe_build/install_system.sh [opencv]
set -euo pipefail
PKGS=(
  build-essential
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
  libhdf5-dev liblmdb-dev libopenblas-dev
  libboost-system-dev libboost-filesystem-dev libboost-thread-dev
  libboost-regex-dev libboost-python-dev
  dataset-fashion-mnist
  wordnet-base
  slurm-wlm munge
)
OPENCV_PKGS=(libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)
if [ "${1:-}" = opencv ] || [ "${CAFFE_OPENCV:-}" = 1 ]; then
  PKGS+=("${OPENCV_PKGS[@]}")
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${missing[*]}; fix: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2> >(grep -v '^debconf: delaying' >&2)
