#!/usr/bin/env bash
# Configures and builds Holdfast into build/ (or build-asan/ with --sanitize).
#   scripts/build.sh [--sanitize | --tsan]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
    dir=$top/build-asan
    flags=(-DCMAKE_BUILD_TYPE=Debug -DHOLDFAST_SANITIZE=ON)
elif [ "${1:-}" = "--tsan" ]; then
    dir=$top/build-tsan
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOLDFAST_TSAN=ON)
fi
# ccache (from scripts/setup.sh) makes rebuilds of the generated protobuf code cheap.
command -v ccache >/dev/null 2>&1 && flags+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S "$top" -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
