#!/usr/bin/env bash
# Command 2 of the README: installs what is needed, builds, and runs the whole test suite
# under ctest (unit, integration, ...).
#   scripts/test.sh              the normal build (build/)
#   scripts/test.sh --sanitize   everything built and run with AddressSanitizer + UBSan
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
"$top/scripts/build.sh" "$@"
dir=$top/build
[ "${1:-}" = "--sanitize" ] && dir=$top/build-asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir"
ctest --output-on-failure -j 2 --timeout 600
