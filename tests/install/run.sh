#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then configures, builds and
# runs a separate project that uses find_package(leasehold).
set -euo pipefail
build_dir=$1 source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/tests/install/consumer" -B "$work/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE="${3:-RelWithDebInfo}" \
  "-DCMAKE_CXX_FLAGS=${4:-}" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
