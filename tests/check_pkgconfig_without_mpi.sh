#!/usr/bin/env bash
# `pkg-config --cflags --libs xgrad` must resolve where MPI's development files
# are absent: no public header includes <mpi.h>, so a consumer never needs them.
# Runs pkg-config against the build's xgrad.pc and every .pc file this machine
# has except MPI's (mpi*.pc, ompi*.pc).
# Usage: check_pkgconfig_without_mpi.sh <build-dir>
set -euo pipefail
pc="$1/meson-private/xgrad.pc"
[ -f "$pc" ] || { echo "no $pc" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for d in $(pkg-config --variable pc_path pkg-config | tr ':' ' '); do
  [ -d "$d" ] || continue
  for f in "$d"/*.pc; do
    [ -e "$f" ] || continue
    case $(basename "$f") in mpi*|ompi*|*-mpi*) continue ;; esac
    [ -e "$dir/$(basename "$f")" ] || ln -s "$f" "$dir/"
  done
done
cp "$pc" "$dir/"
echo "xgrad.pc requires: $(grep '^Requires' "$pc" | tr '\n' ' ')"
PKG_CONFIG_LIBDIR="$dir" PKG_CONFIG_PATH="" pkg-config --cflags --libs xgrad
