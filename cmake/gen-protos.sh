#!/usr/bin/env bash
# Generates protobuf-c sources for the import closure of api/protos.txt into OUT_DIR.
# Called by CMake at configure time (the file list must be known to CMake) and again at build
# time when an input changes. Never writes into the source tree.
#   gen-protos.sh DEPS_DIR ROOTS_FILE OUT_DIR
# DEPS_DIR is node_modules/@grpc/grpc-js-xds/deps. Prints the generated .c files, one a line.
set -euo pipefail
deps=$1 roots=$2 out=$3
overlay=$out/overlay
mkdir -p "$overlay/validate" "$out/gen"

# The bundled validate.proto predates envoy-api: add StringRules.ignore_empty (upstream field
# number 26) in an overlay folder searched first. protoc-c ignores validation rules anyway.
src_validate=$deps/protoc-gen-validate/validate/validate.proto
if grep -q 'ignore_empty' "$src_validate"; then
    cp "$src_validate" "$overlay/validate/validate.proto"
else
    sed '/^message StringRules {/a\    optional bool ignore_empty = 26;' \
        "$src_validate" > "$overlay/validate/validate.proto.tmp"
    mv "$overlay/validate/validate.proto.tmp" "$overlay/validate/validate.proto"
fi

incs=(-I "$overlay" -I "$deps/envoy-api" -I "$deps/xds" -I "$deps/googleapis"
      -I "$deps/protoc-gen-validate" -I /usr/include)
mapfile -t root_list < <(grep -v -E '^\s*(#|$)' "$roots")

protoc "${incs[@]}" --include_imports --descriptor_set_out="$out/closure.pb" "${root_list[@]}"
protoc -I /usr/include --decode=google.protobuf.FileDescriptorSet google/protobuf/descriptor.proto \
    < "$out/closure.pb" | sed -n 's/^  name: "\(.*\)"$/\1/p' > "$out/closure.txt.tmp"
mv "$out/closure.txt.tmp" "$out/closure.txt"

mapfile -t files < "$out/closure.txt"
protoc-c "${incs[@]}" --c_out="$out/gen" "${files[@]}"

# Python modules of the same closure, for tests that decode what holdfast serves with the
# official protos (Python's protobuf already ships google/protobuf/*).
mkdir -p "$out/py"
mapfile -t py_files < <(grep -v '^google/protobuf/' "$out/closure.txt")
protoc "${incs[@]}" --python_out="$out/py" "${py_files[@]}"
for f in "${files[@]}"; do
    printf '%s/gen/%s\n' "$out" "${f%.proto}.pb-c.c"
done
