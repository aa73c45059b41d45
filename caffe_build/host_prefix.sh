#!/usr/bin/env bash
# Caffe's host libraries as Debian bookworm .deb files that travel to a machine
# where nothing can be installed (or to a cluster without root), unpacked there
# into a prefix folder (dpkg-deb -x, never dpkg -i) that a Caffe build then uses
# for its headers, libraries and protoc.
#
# Usage:
#   caffe_build/host_prefix.sh download DEBDIR   (here: Debian bookworm amd64 with apt)
#       fetches the .deb files of SEEDS below and the closure of their run-time
#       library dependencies, minus BASE; writes DEBDIR/packages.txt
#       (name=version) and, last, DEBDIR/.complete. A complete DEBDIR: no-op.
#       HOST_PREFIX_ICU=1 adds libicu72 (+8.9 MiB; see SKIP).
#   caffe_build/host_prefix.sh unpack DEBDIR PREFIX   (there: needs dpkg-deb, objdump)
#       unpacks into a temporary folder beside PREFIX, makes every symlink
#       relative and inside it, adds OpenBLAS's alternatives links, then renames
#       it to PREFIX and writes PREFIX/.complete. Re-running onto a complete
#       PREFIX of the same packages.txt is a no-op; any other existing PREFIX is
#       refused (error line), never overwritten.
#   caffe_build/host_prefix.sh env PREFIX
#       prints, one a line and safe to eval, HOST_INCLUDE_DIRS and
#       HOST_LIBRARY_DIRS (space separated: -I / -L), HOST_PROTOC,
#       HOST_LD_LIBRARY_PATH (colon separated: for protoc and the built
#       binaries, unless they carry -Wl,--disable-new-dtags -Wl,-rpath of every
#       library dir) and HOST_LDFLAGS (-Wl,--as-needed while ICU is left out).
# Errors: one line "error: <problem>; fix: <fix>" on stderr, exit 1.
#
# Measured (bookworm, 2025): 56 packages, 38.5 MiB of .deb files (download: 13 s);
# 324 MiB unpacked (boost's headers 162 MiB, static .a files 79 MiB; 7 s). The
# libraries need glibc >= 2.34 and libstdc++ GLIBCXX_3.4.29 (GCC 11+): Ubuntu
# 22.04 and later, Debian 12 and later; unpack checks this machine's.
set -euo pipefail

# What Caffe's Makefile compiles and links against (-dev: headers and the
# unversioned .so links), plus protoc. The runtime library packages follow.
SEEDS=(libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler
       libboost1.74-dev libboost-system1.74-dev libboost-filesystem1.74-dev
       libboost-thread1.74-dev libboost-regex1.74-dev
       libhdf5-dev liblmdb-dev libopenblas-pthread-dev)
# BASE: never downloaded. Measured with ldd of g++, gcc, cc1plus, collect2, ld,
# as and make: a machine that compiles C++ loads libc6, zlib1g, libzstd1 and
# libgmp10 (cc1plus, ld) and links against libgcc-s1 and libstdc++6 (the same
# on Ubuntu). The first three must not travel either: a copy on
# LD_LIBRARY_PATH would shadow the target compiler's own, newer runtime.
# gcc-12-base holds only docs. (Debian's libc6-dev -> libtirpc3 also drags
# libssl3 and krb5 onto such machines, but not on every distribution: they
# travel, ~2.6 MiB.)
BASE=(libc6 libgcc-s1 libstdc++6 zlib1g libzstd1 libgmp10 gcc-12-base)
# SKIP: run-time deps of the seeds that Caffe never loads. The naive closure
# (apt-cache depends --recurse of the -dev packages) is 110 MiB: the -dev
# packages' own -dev deps (libcurl4-openssl-dev, libssl-dev, libjpeg-dev,
# libicu-dev, libstdc++-12-dev, ...) are never followed; of hdf5 only the C
# and C high-level libraries are kept (Caffe links hdf5_hl hdf5; their
# Fortran/C++ .so links in libhdf5-dev are removed as dangling). libicu72
# (8.9 MiB, needed by libboost_regex.so.1.74.0) is left out: Caffe's sources
# compile to no libboost_regex symbol (measured: no kit libcaffe.so has it
# NEEDED), and with --as-needed (Debian's and Ubuntu's gcc default;
# HOST_LDFLAGS) ld drops -lboost_regex without looking for ICU. Without
# --as-needed ld fails on ICU's symbols: then use HOST_PREFIX_ICU=1.
# libhdf5's libcurl4 (+ssl, gnutls, krb5, ldap, ...) is kept: libhdf5_serial.so
# has it NEEDED, so ld and ld.so need it although Caffe never opens a URL.
SKIP=(libhdf5-cpp-103-1 libhdf5-hl-cpp-100 libhdf5-fortran-102 libhdf5-hl-fortran-100 libicu72)
[ "${HOST_PREFIX_ICU:-0}" = 1 ] && SKIP=("${SKIP[@]:0:4}")
DEPFLAGS=(--no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances)
MA=lib/x86_64-linux-gnu
WORK=  # a temporary folder, removed on exit
trap '[ -z "$WORK" ] || rm -rf "$WORK"' EXIT

die() { echo "error: $*" >&2; exit 1; }
in_list() { local x=$1; shift; local y; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }
need_tool() { command -v "$1" >/dev/null || die "no $1 on PATH; fix: $2"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
plain_path() {  # make and LD_LIBRARY_PATH cannot take spaces, colons or quotes
  [[ $1 =~ ^[A-Za-z0-9._/+@=,-]+$ ]] || die "path '$1' has a space, colon, quote or other special character; fix: use a plain path (letters, digits, . _ - / + @ = ,)"
}
deb_file() { local f=("$1"/"${2%%=*}"_"${2#*=}"_*.deb); [ -f "${f[0]}" ] && echo "${f[0]}"; }
deb_bytes() { local t=0 line f; while read -r line; do f=$(deb_file "$1" "${line//:/%3a}") || return 1
  t=$((t + $(stat -c %s "$f"))); done < "$1/packages.txt"; echo $t; }

# The first real (non-virtual) choice of every dependency group of each package
# named on stdin's apt-cache depends output; a group of only virtual packages
# takes its first provider.
first_choices() {
  awk 'function emit() { if (ended) { print (cur != "" ? cur : prov); cur = prov = ""; ended = inv = 0 } }
    /^[^ ]/ { emit(); next }
    /^ [ |](Pre)?Depends: / { emit(); n = $2; sub(/:(any|amd64)$/, "", n)
      if (n ~ /^</) inv = (cur == "" && prov == ""); else { inv = 0; if (cur == "") cur = n }
      if (substr($0, 2, 1) != "|") ended = 1; next }
    /^    / { if (inv && prov == "") prov = $1 }
    END { emit() }'
}

wanted() {  # a runtime library package that is neither base nor skipped
  local p=$1
  in_list "$p" "${BASE[@]}" && return 1
  in_list "$p" "${SKIP[@]}" && return 1
  [[ $p == lib* && $p != *-dev && $p != *-doc && $p != *:* ]]
}

cmd_download() {
  local debdir=${1:-}
  [ -n "$debdir" ] || die "download needs a folder; fix: caffe_build/host_prefix.sh download DEBDIR"
  if [ -f "$debdir/.complete" ]; then
    local b; b=$(deb_bytes "$debdir") || die "$debdir/.complete is there but a .deb of packages.txt is missing; fix: rm -r $debdir and download again"
    echo "$debdir is complete: $(wc -l < "$debdir/packages.txt") packages, $(mib "$b"); nothing to do"
    return 0
  fi
  need_tool apt-cache "run download on Debian bookworm (amd64) with apt"
  [ "$(dpkg --print-architecture)" = amd64 ] || die "this is $(dpkg --print-architecture), the prefix is amd64; fix: run download on an amd64 Debian bookworm"
  has_candidate() { [[ $(apt-cache policy libgoogle-glog-dev 2>/dev/null) == *"Candidate: "[0-9]* ]]; }
  if ! has_candidate; then
    [ "$(id -u)" -eq 0 ] || die "apt has no candidate for libgoogle-glog-dev (empty package lists?); fix: sudo apt-get update, then rerun"
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed; fix: check the network and /etc/apt/sources.list"
    has_candidate || die "apt has no libgoogle-glog-dev; fix: run download on Debian bookworm (its package names are pinned here)"
  fi
  mkdir -p "$debdir" || die "cannot create $debdir; fix: name a writable folder"
  WORK=$(mktemp -d); local tmp=$WORK
  # breadth-first closure: each round asks apt-cache about all new packages at once
  local -A seen=(); local p d v a selected=("${SEEDS[@]}") queue=("${SEEDS[@]}") next
  for p in "${SEEDS[@]}"; do seen[$p]=1; done
  while [ ${#queue[@]} -gt 0 ]; do
    apt-cache depends "${DEPFLAGS[@]}" "${queue[@]}" > "$tmp/deps" 2>"$tmp/err" \
      || die "apt-cache depends failed: $(tail -1 "$tmp/err"); fix: run download on Debian bookworm"
    next=()
    while read -r d; do
      [ -n "$d" ] && [ -z "${seen[$d]:-}" ] || continue
      seen[$d]=1
      wanted "$d" && next+=("$d")
    done < <(first_choices < "$tmp/deps")
    selected+=("${next[@]}"); queue=("${next[@]}")
  done
  # the candidate of each (one apt-cache call): name=version, a real amd64 (or all) package
  apt-cache show --no-all-versions "${selected[@]}" > "$tmp/show" 2>/dev/null || true
  awk '/^Package:/ { p = $2 } /^Version:/ { v = $2 } /^Architecture:/ { a = $2 }
    /^$/ && p != "" { print p, v, a; p = "" } END { if (p != "") print p, v, a }' "$tmp/show" > "$tmp/cand"
  for p in "${selected[@]}"; do
    read -r _ v a < <(awk -v p="$p" '$1 == p' "$tmp/cand")
    [ -n "${v:-}" ] || die "apt has no candidate for $p; fix: run download on Debian bookworm (amd64) after apt-get update"
    [ "$a" = amd64 ] || [ "$a" = all ] || die "$p is $a here, not amd64; fix: run download on an amd64 Debian bookworm"
    echo "$p=$v" >> "$tmp/pins"; v=
  done
  sort -o "$tmp/pins" "$tmp/pins"
  local sandbox=(); [ "$(id -u)" -eq 0 ] && sandbox=(-o APT::Sandbox::User=root)
  mapfile -t pins < "$tmp/pins"
  (cd "$debdir" && apt-get download "${sandbox[@]}" "${pins[@]}") > "$tmp/log" 2>&1 \
    || die "apt-get download failed: $(grep -m1 '^E:' "$tmp/log" || tail -1 "$tmp/log"); fix: check the network and apt sources, then rerun"
  cp "$tmp/pins" "$debdir/packages.txt"
  local bytes; bytes=$(deb_bytes "$debdir") || die "apt-get download left out a package of $debdir/packages.txt; fix: rerun download"
  touch "$debdir/.complete"
  echo "downloaded ${#pins[@]} packages, $(mib "$bytes") ($bytes bytes), into $debdir"
}

relink_inside() {  # absolute symlinks -> relative ones inside $1; dangling ones removed
  local root=$1 link target
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    [[ $target == /* ]] || continue
    ln -sfn "$(realpath -s -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
  done < <(find "$root" -type l -print0)
  # a link that escapes with ../ past the root is as bad as an absolute one
  while IFS= read -r -d '' link; do
    [[ $(realpath -m "$link") == "$root"/* ]] || { echo "${link#"$root"/}" >> "$root/.dropped-links"; rm -f "$link"; }
  done < <(find "$root" -type l -print0)
  while [ -n "$(find "$root" -xtype l -print -quit)" ]; do  # links whose target did not travel
    find "$root" -xtype l -printf '%P\n' -delete >> "$root/.dropped-links"
  done
  touch "$root/.dropped-links"; wc -l < "$root/.dropped-links"
}

openblas_links() {  # what update-alternatives makes on Debian for libopenblas0-pthread
  local root=$1 f
  for f in "$root/usr/$MA/openblas-pthread"/lib{openblas,blas,lapack}.{so,so.0,so.3,a}; do
    [ -e "$f" ] && [ ! -e "$root/usr/$MA/${f##*/}" ] && ln -s "openblas-pthread/${f##*/}" "$root/usr/$MA/"
  done
  for f in "$root/usr/include/x86_64-linux-gnu/openblas-pthread"/*.h; do
    [ -e "$root/usr/include/x86_64-linux-gnu/${f##*/}" ] || ln -s "openblas-pthread/${f##*/}" "$root/usr/include/x86_64-linux-gnu/"
  done
  [ -e "$root/usr/include/x86_64-linux-gnu/cblas-openblas.h" ] || ln -s openblas-pthread/cblas.h "$root/usr/include/x86_64-linux-gnu/cblas-openblas.h"
  [ -e "$root/usr/$MA/libopenblas.so" ] && [ -e "$root/usr/include/x86_64-linux-gnu/cblas.h" ] \
    || die "the debs hold no OpenBLAS libopenblas.so/cblas.h under openblas-pthread; fix: download again with this script"
}

glibc_check() {  # newest GLIBC_ / GLIBCXX_ symbol version the prefix's ELF files ask for
  local root=$1 need needxx have lib
  { find "$root/usr" -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec objdump -T {} + 2>/dev/null || true; } \
    | grep -o 'GLIBC\(XX\)\?_[0-9.]*[0-9]' | sort -uV > "$root/.symvers" || true
  need=$(grep '^GLIBC_' "$root/.symvers" | tail -1 || true)
  needxx=$(grep '^GLIBCXX_' "$root/.symvers" | tail -1 || true)
  rm -f "$root/.symvers"
  [ -n "$need" ] || die "objdump found no GLIBC_ symbol versions in the prefix; fix: check that objdump (binutils) works"
  echo "needs $need $needxx" > "$root/.needs"
  have=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
  [ "$(printf '%s\n' "${need#GLIBC_}" "$have" | sort -V | head -1)" = "${need#GLIBC_}" ] \
    || die "the prefix's libraries need $need, this system has glibc $have; fix: use a system with glibc >= ${need#GLIBC_} (Ubuntu 22.04+, Debian 12+)"
  lib=$(g++ -print-file-name=libstdc++.so.6 2>/dev/null || true)
  if [ -n "$needxx" ] && [ -f "$lib" ] && ! grep -qw -- "$needxx" <<< "$(objdump -p "$lib")"; then
    die "the prefix's libraries need $needxx, this g++'s libstdc++ lacks it; fix: use GCC 11 or newer"
  fi
}

cmd_unpack() {
  local debdir=${1:-} prefix=${2:-}
  [ -n "$debdir" ] && [ -n "$prefix" ] || die "unpack needs two folders; fix: caffe_build/host_prefix.sh unpack DEBDIR PREFIX"
  [ -f "$debdir/.complete" ] || die "$debdir is not a finished download (no .complete); fix: caffe_build/host_prefix.sh download $debdir (here), then copy it whole"
  need_tool dpkg-deb "install dpkg (it is on every Debian/Ubuntu) or unpack on a machine that has it"
  need_tool objdump "install binutils (it comes with gcc)"
  if [ -e "$prefix" ]; then
    if [ -f "$prefix/.complete" ] && cmp -s "$prefix/packages.txt" "$debdir/packages.txt"; then
      echo "$prefix is unpacked already from these packages; nothing to do"; return 0
    fi
    [ -f "$prefix/.complete" ] && die "$prefix holds another package set than $debdir/packages.txt; fix: rm -r $prefix, or name a new PREFIX"
    rmdir "$prefix" 2>/dev/null || die "$prefix exists and is not a finished prefix; fix: rm -r $prefix (if it is an interrupted unpack), or name a new PREFIX"
  fi
  mkdir -p "$(dirname "$prefix")" || die "cannot create $(dirname "$prefix"); fix: name a writable PREFIX"
  local parent; parent=$(cd "$(dirname "$prefix")" && pwd -P)
  local final="$parent/$(basename "$prefix")"
  plain_path "$final"
  WORK="$parent/.$(basename "$prefix").partial"; local tmp=$WORK
  rm -rf "$tmp"; mkdir "$tmp"
  local line f n=0
  while read -r line; do
    f=$(deb_file "$debdir" "${line//:/%3a}") || die "$debdir lacks the .deb of $line; fix: rm -r $debdir and download again"
    dpkg-deb -x "$f" "$tmp" || die "dpkg-deb -x $f failed; fix: download again (a damaged .deb?)"
    n=$((n + 1))
  done < "$debdir/packages.txt"
  local dropped; dropped=$(relink_inside "$tmp")
  openblas_links "$tmp"
  glibc_check "$tmp"
  cp "$debdir/packages.txt" "$tmp/packages.txt"
  touch "$tmp/.complete"  # inside the hidden partial folder until the atomic rename
  mv -T "$tmp" "$final" || die "cannot rename $tmp to $final; fix: check that $final does not exist and the folder is writable"
  WORK=
  echo "unpacked $n packages into $final ($(du -sh "$final" | cut -f1); $dropped dangling links dropped, listed in .dropped-links; $(cat "$final/.needs"))"
}

cmd_env() {
  local prefix=${1:-}
  [ -n "$prefix" ] || die "env needs the prefix folder; fix: caffe_build/host_prefix.sh env PREFIX"
  [ -f "$prefix/.complete" ] || die "$prefix is not a finished prefix (no .complete); fix: caffe_build/host_prefix.sh unpack DEBDIR $prefix"
  local p; p=$(cd "$prefix" && pwd -P)
  plain_path "$p"
  local ob="$MA/openblas-pthread"
  echo "HOST_INCLUDE_DIRS=\"$p/usr/include/x86_64-linux-gnu/openblas-pthread $p/usr/include/hdf5/serial $p/usr/include/x86_64-linux-gnu $p/usr/include\""
  # bookworm is not fully usr-merged: liblzma5, libkeyutils1, libcom-err2 unpack into lib/
  echo "HOST_LIBRARY_DIRS=\"$p/usr/$ob $p/usr/$MA/hdf5/serial $p/usr/$MA $p/$MA\""
  echo "HOST_PROTOC=\"$p/usr/bin/protoc\""
  echo "HOST_LD_LIBRARY_PATH=\"$p/usr/$ob:$p/usr/$MA:$p/$MA\""
  if [ -e "$p/usr/$MA/libicuuc.so.72" ]; then echo 'HOST_LDFLAGS=""'; else echo 'HOST_LDFLAGS="-Wl,--as-needed"'; fi
}

case "${1:-}" in
  download) shift; [ $# -le 1 ] || die "download takes one folder; fix: caffe_build/host_prefix.sh download DEBDIR"; cmd_download "$@" ;;
  unpack) shift; [ $# -le 2 ] || die "unpack takes two folders; fix: caffe_build/host_prefix.sh unpack DEBDIR PREFIX"; cmd_unpack "$@" ;;
  env) shift; [ $# -le 1 ] || die "env takes one folder; fix: caffe_build/host_prefix.sh env PREFIX"; cmd_env "$@" ;;
  *) die "unknown command '${1:-}'; fix: caffe_build/host_prefix.sh download DEBDIR | unpack DEBDIR PREFIX | env PREFIX" ;;
esac
